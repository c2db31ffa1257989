-- The shipped policies, the opt-in one and the README examples, each run
-- through the real chain (sandbox and read-only inputs included) against
-- request fixtures under tests/fixtures/policies/.
local policy = require "internal_services.policy"
local fixtures = require "spec.support.fixtures"
local cjson = require "cjson"

local POLICIES = fixtures.root .. "/../../policies/"
local NS = "internal-services"

local function read(path)
    local f = assert(io.open(POLICIES .. path, "rb"))
    local text = f:read("a")
    f:close()
    return text
end

local function chain_for(path)
    local chain = policy.new({ namespace = NS })
    assert(chain:load({ { name = path:match("[^/]+$"), source = read(path) } }))
    return chain
end

local function fixture(name)
    return name and fixtures.load("policies/" .. name .. ".json") or nil
end

-- cases: { request fixture, config fixture or false for none, expected
-- message or true }
local function table_driven(path, cases)
    describe(path, function()
        local chain = chain_for(path)
        for _, case in ipairs(cases) do
            local req, cfg, expected = case[1], case[2], case[3]
            it(("%s with %s: %s"):format(req, cfg or "no config", tostring(expected)), function()
                local ok, message, name = chain:evaluate(fixture(req), fixture(cfg or nil))
                if expected == true then
                    assert.is_true(ok, message)
                else
                    assert.is_false(ok)
                    assert.are.equal(expected, message)
                    assert.are.equal(path:match("[^/]+$"), name)
                end
            end)
        end
    end)
end

local URL = "https://git.example.com/release/pipelines.git"
local SHA = "0123456789abcdef0123456789abcdef01234567"

table_driven("allowlist.lua", {
    { "request-cluster-tenant-a", "config", true },
    { "request-git-branch", "config", true },
    { "request-cluster-tenant-c", "config",
      'namespace "tenant-c" is not in the allow list of InternalServicesConfig internal-services/config' },
    { "request-cluster-tenant-a", "config-empty-spec",
      'namespace "tenant-a" is not in the allow list of InternalServicesConfig internal-services/config' },
    { "request-cluster-tenant-a", false,
      "InternalServicesConfig internal-services/config not found: no remote namespace is allowed" },
    { "request-no-namespace", "config", "the request has no namespace" },
})

table_driven("git_url.lua", {
    { "request-git-branch", "config", true },
    { "request-git-pinned", "config", true },
    { "request-git-other-url", "config",
      ('git resolver url "%s/" is not in allowedGitResolverURLs'):format(URL) },
    { "request-git-no-url", "config",
      'the git resolver needs a "url" param naming one of allowedGitResolverURLs' },
    { "request-git-other-url", "config-no-git-urls", true },
    { "request-git-other-url", "config-empty-spec", true },
    { "request-git-other-url", false, true },
    { "request-cluster-tenant-a", "config", true },
    { "request-bundles", "config", true },
})

table_driven("optional/pinned_revision.lua", {
    { "request-git-pinned", "config", true },
    { "request-git-pinned-upper", "config", true },
    { "request-git-branch", "config", 'git revision "main" is not a full 40-character commit SHA' },
    { "request-git-short-sha", "config",
      ('git revision "%s" is not a full 40-character commit SHA'):format(SHA:sub(1, 12)) },
    { "request-git-sha-41", "config",
      ('git revision "%s0" is not a full 40-character commit SHA'):format(SHA) },
    { "request-git-not-hex", "config",
      ('git revision "%s" is not a full 40-character commit SHA'):format(("g"):rep(40)) },
    { "request-git-no-revision", "config",
      'the git resolver needs a "revision" param holding a full commit SHA' },
    { "request-cluster-tenant-a", "config", true },
    { "request-bundles", false, true },
})

table_driven("examples/pipelines_per_namespace.lua", {
    { "request-cluster-tenant-a", "config", true },
    { "request-git-pinned", "config", true },
    { "request-cluster-tenant-a-other", "config",
      'namespace "tenant-a" may not run pipeline "delete-everything"' },
    { "request-cluster-tenant-c", "config", 'namespace "tenant-c" may not run pipeline "sign-release"' },
    { "request-git-other-path", "config", 'namespace "tenant-b" may not run pipeline "pipelines/other.yaml"' },
    { "request-cluster-no-name", "config", 'the cluster resolver needs a "name" param' },
    { "request-bundles", "config", 'pipelines from the "bundles" resolver are not allowed here' },
})

table_driven("examples/param_limits.lua", {
    { "request-cluster-tenant-a", "config", true },
    { "request-cluster-tenant-a-other", "config", true },
    { "request-params-limit", "config", true },
    { "request-params-value-limit", "config", true },
    { "request-params-list", "config", true },
    { "request-params-too-many", "config", "at most 16 params are allowed" },
    { "request-params-value-too-big", "config", 'param "blob" is 4097 bytes long; the limit is 4096' },
    { "request-params-list-too-big", "config", 'param "blob" is 5000 bytes long; the limit is 4096' },
})

describe("the shipped policy directory", function()
    local function top_level_scripts()
        local scripts = {}
        local p = io.popen('ls -1 "' .. POLICIES .. '"')
        for file in p:lines() do
            if file:match("%.lua$") then
                scripts[#scripts + 1] = { name = file, source = read(file) }
            end
        end
        p:close()
        return scripts
    end

    it("loads as one set in file-name order, without optional/ and examples/", function()
        local chain = policy.new({ namespace = NS })
        assert(chain:load(top_level_scripts()))
        assert.are.same({ "allowlist.lua", "git_url.lua" }, chain:names())
    end)

    local cases = {
        { "request-git-pinned", "config", true },
        { "request-cluster-tenant-c", "config",
          'namespace "tenant-c" is not in the allow list of InternalServicesConfig internal-services/config' },
        { "request-git-other-url", "config",
          ('git resolver url "%s/" is not in allowedGitResolverURLs'):format(URL) },
        { "request-git-branch", false,
          "InternalServicesConfig internal-services/config not found: no remote namespace is allowed" },
    }
    for _, case in ipairs(cases) do
        it(("decides %s with %s: %s"):format(case[1], case[2] or "no config", tostring(case[3])), function()
            local chain = policy.new({ namespace = NS })
            assert(chain:load(top_level_scripts()))
            local ok, message = chain:evaluate(fixture(case[1]), fixture(case[2] or nil))
            if case[3] == true then
                assert.is_true(ok, message)
            else
                assert.is_false(ok)
                assert.are.equal(case[3], message)
            end
        end)
    end

    it("treats JSON nulls in the config as absent lists", function()
        local chain = policy.new({ namespace = NS })
        assert(chain:load(top_level_scripts()))
        local config = cjson.decode('{"metadata":{"name":"config","namespace":"internal-services"},' ..
            '"spec":{"allowList":null,"allowedGitResolverURLs":null}}')
        local ok, message = chain:evaluate(fixture("request-git-pinned"), config)
        assert.is_false(ok)
        assert.are.equal('namespace "tenant-b" is not in the allow list of InternalServicesConfig ' ..
            "internal-services/config", message)
    end)
end)
