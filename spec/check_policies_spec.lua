-- internal_services.check_policies: the main module of
-- `internal-services check-policies`, run here with a stand-in host.
local check_policies = require "internal_services.check_policies"
local fixtures = require "spec.support.fixtures"

local SHIPPED = fixtures.root .. "/../../policies"

local function scripts(list)
    return function() return list end
end

local function cfg(args, dir)
    return { policy_dir = dir or SHIPPED, namespace = "internal-services", args = args }
end

local function args_for(request, config)
    local args = { "request.json", fixtures.read("policies/" .. request .. ".json") }
    if config then
        args[3], args[4] = "config.json", fixtures.read("policies/" .. config .. ".json")
    end
    return args
end

-- The host's own reader, as the command has it.
local read_scripts = require("internal_services.policy_check").read_scripts

describe("check_policies.run", function()
    it("allows, naming the policies that ran", function()
        local code, line = check_policies.run(cfg(args_for("request-cluster-tenant-a", "config")), read_scripts)
        assert.are.equal(check_policies.ALLOW, code)
        assert.are.equal("allow (allowlist.lua, git_url.lua)", line)
    end)

    it("denies with the policy and its message", function()
        local code, line = check_policies.run(cfg(args_for("request-cluster-tenant-c", "config")), read_scripts)
        assert.are.equal(check_policies.DENY, code)
        assert.are.equal('deny (allowlist.lua): namespace "tenant-c" is not in the allow list of '
            .. "InternalServicesConfig internal-services/config", line)
    end)

    it("runs without a config as the controller does when there is none", function()
        local code, line = check_policies.run(cfg(args_for("request-cluster-tenant-a")), read_scripts)
        assert.are.equal(check_policies.DENY, code)
        assert.are.equal("deny (allowlist.lua): InternalServicesConfig internal-services/config not found: "
            .. "no remote namespace is allowed", line)
    end)

    it("decides nothing when a policy does not compile, naming file and line", function()
        local code, line = check_policies.run(cfg(args_for("request-cluster-tenant-a", "config"), "site"),
            scripts({ { name = "10-x.lua", source = "return function()\n  return true\nend end" } }))
        assert.are.equal(check_policies.ERROR, code)
        assert.are.equal("site/10-x.lua:3: <eof> expected near 'end'", line)
    end)

    it("decides nothing on input that is not JSON, naming the file", function()
        local code, line = check_policies.run(cfg({ "r.json", "{" }), read_scripts)
        assert.are.equal(check_policies.ERROR, code)
        assert.matches("^r%.json: not JSON", line)
        code, line = check_policies.run(cfg({ "r.json", "{}", "c.json", "[" }), read_scripts)
        assert.are.equal(check_policies.ERROR, code)
        assert.matches("^c%.json: not JSON", line)
        code, line = check_policies.run(cfg({}), read_scripts)
        assert.are.same({ check_policies.ERROR, "no request given" }, { code, line })
    end)
end)

describe("check_policies.start", function()
    local saved
    before_each(function() saved = package.loaded.host end)
    after_each(function() package.loaded.host = saved end)

    local function host_with(config, read)
        local h = { config = config, read_scripts = read }
        h.shutdown = function(code, why) h.exit = { code, why } end
        package.loaded.host = h
        return h
    end

    it("hands the verdict to host.shutdown", function()
        local h = host_with(cfg(args_for("request-cluster-tenant-a", "config")), read_scripts)
        check_policies.start()
        assert.are.same({ 0, "allow (allowlist.lua, git_url.lua)" }, h.exit)
    end)

    it("turns an error of its own into exit code 2", function()
        local h = host_with(cfg(args_for("request-cluster-tenant-a")), function() error("reader broke", 0) end)
        check_policies.start()
        assert.are.same({ 2, "reader broke" }, h.exit)
    end)
end)
