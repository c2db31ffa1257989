local policy = require "internal_services.policy"

local ALLOW = "return function() return true end"

local function script(name, source)
    return { name = name, source = source }
end

local function chain_with(scripts, opts)
    local chain = policy.new(opts or { budget = 100000, memory = 4 * 1024 * 1024 })
    assert(chain:load(scripts))
    return chain
end

local request = { metadata = { name = "r", namespace = "tenant-a" }, spec = { params = { a = "1" } } }

describe("policy chain loading", function()
    it("loads scripts in file-name order whatever order they come in", function()
        local chain = chain_with({ script("20-b.lua", ALLOW), script("10-a.lua", ALLOW), script("30-c.lua", ALLOW) })
        assert.are.same({ "10-a.lua", "20-b.lua", "30-c.lua" }, chain:names())
    end)

    it("evaluates in that order and stops at the first denial", function()
        local chain = chain_with({
            script("b.lua", "return function() return false, 'b says no' end"),
            script("a.lua", "return function() return false, 'a says no' end"),
        })
        assert.are.same({ false, "a says no", "a.lua" }, { chain:evaluate(request, {}) })
    end)

    it("keeps the last good set when a script does not compile, naming the file and the error", function()
        local logged = {}
        local chain = chain_with({ script("a.lua", ALLOW) }, {
            log = function(level, msg, fields) logged[#logged + 1] = { level, msg, fields } end,
        })
        local ok, err = chain:load({ script("a.lua", "return function() return false end"),
                                     script("b.lua", "return function(\n  if then end") })
        assert.is_nil(ok)
        assert.matches('policy "b.lua" rejected, keeping the previous policies: b.lua:2:', err, 1, true)
        assert.matches("expected near 'if'", err, 1, true)
        assert.are.same({ "a.lua" }, chain:names())
        assert.is_true(chain:evaluate(request, {}))
        assert.are.equal("error", logged[#logged][1])
        assert.are.equal(err, logged[#logged][2])
        assert.are.equal("b.lua", logged[#logged][3].policy)
    end)

    it("replaces the set once every script compiles", function()
        local chain = chain_with({ script("a.lua", ALLOW) })
        assert.is_true(chain:load({ script("z.lua", "return function() return false, 'closed' end") }))
        assert.are.same({ "z.lua" }, chain:names())
        assert.are.same({ false, "closed", "z.lua" }, { chain:evaluate(request, {}) })
    end)

    local bad_scripts = {
        { "returns no function", "return 42", 'policy "x.lua" rejected, keeping the previous policies: ' ..
            "x.lua: the script must return a function, it returned number" },
        { "errors at load", "error('boom')", "x.lua:1: boom" },
        { "loops at load", "while true do end", "x.lua: instruction budget exceeded" },
        { "is bytecode", string.dump(function() return function() return true end end), "binary chunk" },
    }
    for _, case in ipairs(bad_scripts) do
        it("rejects a script that " .. case[1], function()
            local chain = chain_with({ script("a.lua", ALLOW) })
            local ok, err = chain:load({ script("x.lua", case[2]) })
            assert.is_nil(ok)
            assert.matches(case[3], err, 1, true)
            assert.are.same({ "a.lua" }, chain:names())
        end)
    end

    it("refuses an empty set and keeps the previous one", function()
        local chain = chain_with({ script("a.lua", ALLOW) })
        local ok, err = chain:load({})
        assert.is_nil(ok)
        assert.matches("no policy files found", err)
        assert.are.same({ "a.lua" }, chain:names())
    end)

    it("gives every script its own globals", function()
        local chain = chain_with({
            script("a.lua", "shared = 'from a'; return function() return true end"),
            script("b.lua", "return function() return shared == nil, 'saw a global of a.lua' end"),
        })
        assert.is_true(chain:evaluate(request, {}))
    end)
end)

describe("policy chain evaluation fails closed", function()
    local cases = {
        { "a runtime error", "return function(r) return r.missing.field end",
          '^policy "p.lua" failed: p.lua:1: attempt to index a nil value %(field \'missing\'%)$' },
        { "an infinite loop", "return function() while true do end end",
          '^policy "p.lua" failed: instruction budget exceeded$' },
        { "a budget error swallowed by pcall", "return function() while true do pcall(function() while true do end end) end end",
          '^policy "p.lua" failed: instruction budget exceeded$' },
        { "a memory bomb", "return function() local t = {} while true do t[#t+1] = {1,2,3,4,5,6,7,8} end end",
          '^policy "p.lua" failed: memory limit exceeded$', 1e9 },
        { "a string.rep bomb", "return function() return ('x'):rep(1e9) end",
          '^policy "p.lua" failed: memory limit exceeded: string.rep would build' },
        { "returning nil", "return function() end",
          '^policy "p.lua" returned nil instead of true or false and a message$' },
        { "returning a string", "return function() return 'yes' end",
          '^policy "p.lua" returned string instead of true or false and a message$' },
        { "returning 1", "return function() return 1 end",
          '^policy "p.lua" returned number instead of true or false and a message$' },
        { "returning false without a message", "return function() return false end",
          '^denied by policy "p.lua"$' },
        { "returning false with a table message", "return function() return false, {} end",
          '^denied by policy "p.lua"$' },
        { "writing to the request", "return function(r) r.metadata.namespace = 'allowed' return true end",
          '^policy "p.lua" failed: p.lua:1: policy inputs are read%-only: cannot set field "namespace"$' },
    }
    for _, case in ipairs(cases) do
        it("denies on " .. case[1], function()
            local chain = chain_with({ script("a.lua", ALLOW), script("p.lua", case[2]) },
                { budget = case[4] or 100000, memory = 4 * 1024 * 1024 })
            local ok, message, name = chain:evaluate(request, {})
            assert.is_false(ok)
            assert.matches(case[3], message)
            assert.are.equal("p.lua", name)
        end)
    end

    it("denies everything when no set was ever loaded", function()
        local chain = policy.new()
        assert.is_nil(chain:load({ script("a.lua", "return (") }))
        local ok, message, name = chain:evaluate(request, {})
        assert.is_false(ok)
        assert.are.equal("no policies are loaded: every request is denied", message)
        assert.is_nil(name)
    end)

    it("keeps denial messages short", function()
        local chain = chain_with({ script("p.lua", "return function() return false, ('x'):rep(5000) end") })
        local _, message = chain:evaluate(request, {})
        assert.are.equal(policy.MAX_MESSAGE, #message)
        assert.matches("%.%.%.$", message)
    end)

    it("stays usable after a policy hit a limit", function()
        local chain = chain_with({ script("p.lua", "return function(r) if r.loop then while true do end end return true end") })
        assert.is_false((chain:evaluate({ loop = true }, {})))
        assert.is_true(chain:evaluate({}, {}))
    end)
end)

describe("policy inputs", function()
    it("passes read-only copies of request, config and context", function()
        local chain = chain_with({ script("p.lua", [[
            return function(request, config, context)
                return request.metadata.namespace == "tenant-a" and config.spec.allowList[1] == "tenant-a"
                    and context.namespace == "internal-services", "inputs were not passed through"
            end
        ]]) }, { namespace = "internal-services" })
        assert.is_true(chain:evaluate(request, { spec = { allowList = { "tenant-a" } } }))
    end)

    it("passes nil for a missing config", function()
        local chain = chain_with({ script("p.lua", "return function(r, c) return c == nil, 'config was not nil' end") })
        assert.is_true(chain:evaluate(request, nil))
    end)

    it("lets the caller's context replace the chain's namespace", function()
        local chain = chain_with({ script("p.lua", "return function(r, c, ctx) return false, ctx.namespace end") },
            { namespace = "default-ns" })
        assert.are.equal("default-ns", select(2, chain:evaluate(request, {})))
        assert.are.equal("other", select(2, chain:evaluate(request, {}, { namespace = "other" })))
    end)

    it("never changes the caller's tables, even for the next policy", function()
        local mine = { metadata = { name = "r", namespace = "tenant-a", labels = { x = "1" } } }
        local config = { spec = { allowList = { "tenant-a" } } }
        local chain = chain_with({
            script("a.lua", [[return function(r, c)
                pcall(function() r.metadata.labels.x = "2" end)
                pcall(function() c.spec.allowList[2] = "evil" end)
                pcall(table.insert, c.spec.allowList, "evil")
                return true
            end]]),
            script("b.lua", [[return function(r, c)
                return r.metadata.labels.x == "1" and #c.spec.allowList == 1, "inputs changed between policies"
            end]]),
        })
        assert.is_true(chain:evaluate(mine, config))
        assert.are.equal("1", mine.metadata.labels.x)
        assert.are.same({ "tenant-a" }, config.spec.allowList)
    end)
end)

describe("policy chain metrics", function()
    local fake_metrics = require "spec.support.fake_metrics"
    local metrics = require "internal_services.metrics"

    it("counts denials and errors by policy, and scripts refused at load", function()
        local reg = fake_metrics.new()
        local m = metrics.new(reg.define)
        local chain = policy.new({ budget = 100000, memory = 4 * 1024 * 1024, metrics = m })
        assert.are.same({ false }, { (chain:evaluate(request, {})) })
        assert.are.equal(1, reg:value("internal_services_policy_denials_total", { policy = "" }))
        assert(chain:load({ script("a.lua", ALLOW),
            script("deny.lua", "return function(r) return r.metadata.name ~= 'no', 'not this one' end"),
            script("fail.lua", "return function(r) if r.metadata.name == 'boom' then error('x') end return r.metadata.name ~= 'nil' or nil end") }))
        local function judge(name)
            return (chain:evaluate({ metadata = { name = name, namespace = "tenant-a" } }, {}))
        end
        assert.is_true(judge("fine"))
        assert.is_false(judge("no"))
        assert.is_false(judge("no"))
        assert.is_false(judge("boom"))
        assert.is_false(judge("nil"))
        assert.are.equal(2, reg:value("internal_services_policy_denials_total", { policy = "deny.lua" }))
        assert.are.equal(2, reg:value("internal_services_policy_errors_total", { policy = "fail.lua" }))
        assert.is_nil(reg:value("internal_services_policy_denials_total", { policy = "a.lua" }))
        assert.is_nil(chain:load({ script("typo.lua", "return function(") }))
        assert.are.equal(1, reg:value("internal_services_policy_load_errors_total", { policy = "typo.lua" }))
    end)
end)
