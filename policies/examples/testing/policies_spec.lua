-- A worked example of testing a policy directory with busted: the
-- repository's shipped policies (../../), evaluated by the controller's own
-- chain and sandbox on the request and config fixtures next to this file.
-- Run from the repository root: busted policies/examples/testing
local check = require "internal_services.policy_check"

local HERE = "policies/examples/testing/"
local function fixture(name) return check.read_json(HERE .. "fixtures/" .. name .. ".json") end

describe("the shipped policies", function()
    local policies = assert(check.load("policies"))
    local config = fixture("config")

    it("let tenant-a run the cluster Pipeline sign-release", function()
        assert.are.equal("allow", policies:check(fixture("sign-release"), config))
    end)

    it("reject a namespace that is not in the allow list", function()
        local decision, message, policy = policies:check(fixture("off-the-list"), config)
        assert.are.equal("deny", decision)
        assert.are.equal("allowlist.lua", policy)
        assert.are.equal('namespace "tenant-x" is not in the allow list of InternalServicesConfig '
            .. "internal-services/config", message)
    end)

    it("reject a git URL that is not allowed", function()
        local decision, message, policy = policies:check(fixture("git-elsewhere"), config)
        assert.are.equal("deny", decision)
        assert.are.equal("git_url.lua", policy)
        assert.matches("https://git.example.org/someone/else.git", message, 1, true)
    end)

    it("reject everything while the InternalServicesConfig is missing", function()
        assert.are.equal("deny", (policies:check(fixture("sign-release"), nil)))
    end)
end)
