-- internal_services.policy_check: a policy directory evaluated as the
-- controller evaluates it, for operators' specs and check-policies.
local check = require "internal_services.policy_check"
local sandbox = require "internal_services.sandbox"
local fixtures = require "spec.support.fixtures"
local lfs = require "lfs"
local cjson = require "cjson"

local SHIPPED = fixtures.root .. "/../../policies"

-- A fresh directory holding files {name = source}; removed after each test.
local made = {}
local function directory(files)
    local dir = os.tmpname()
    os.remove(dir)
    assert(lfs.mkdir(dir))
    made[#made + 1] = dir
    for name, source in pairs(files) do
        if source == "dir" then
            assert(lfs.mkdir(dir .. "/" .. name))
        else
            local f = assert(io.open(dir .. "/" .. name, "wb"))
            f:write(source)
            f:close()
        end
    end
    return dir
end

local function remove_tree(path)
    if lfs.attributes(path, "mode") == "directory" then
        for name in lfs.dir(path) do
            if name ~= "." and name ~= ".." then remove_tree(path .. "/" .. name) end
        end
        lfs.rmdir(path)
    else
        os.remove(path)
    end
end

local function request(ns)
    return {
        metadata = { name = "r", namespace = ns },
        spec = { pipeline = { pipelineRef = { resolver = "cluster", params = {} } } },
    }
end

local ALLOW_ALL = "return function() return true end"

describe("policy_check", function()
    after_each(function()
        for _, dir in ipairs(made) do remove_tree(dir) end
        made = {}
    end)

    it("evaluates the shipped policies as the controller does", function()
        local policies = assert(check.load(SHIPPED))
        assert.are.same({ "allowlist.lua", "git_url.lua" }, policies:names())
        local config = fixtures.load("policies/config.json")
        assert.are.equal("allow", policies:check(fixtures.load("policies/request-cluster-tenant-a.json"), config))
        local decision, message, name = policies:check(fixtures.load("policies/request-cluster-tenant-c.json"), config)
        assert.are.equal("deny", decision)
        assert.are.equal("allowlist.lua", name)
        assert.matches('namespace "tenant%-c" is not in the allow list', message)
    end)

    it("passes no config as nil and the controller's namespace as context", function()
        local dir = directory({
            ["a.lua"] = [[return function(request, config, context)
                return false, tostring(config) .. " " .. context.namespace end]],
        })
        local _, message = assert(check.load(dir)):check(request("t"), nil)
        assert.are.equal("nil internal-services", message)
        _, message = assert(check.load(dir, { namespace = "releng" })):check(request("t"))
        assert.are.equal("nil releng", message)
    end)

    it("reads only *.lua files at the top, in name order, links followed", function()
        local dir = directory({
            ["20-b.lua"] = ALLOW_ALL, ["10-a.lua"] = ALLOW_ALL, [".hidden.lua"] = "syntax error",
            ["notes.txt"] = "syntax error", ["sub"] = "dir", [".lua"] = "syntax error",
        })
        local f = assert(io.open(dir .. "/sub/deep.lua", "wb"))
        f:write("syntax error")
        f:close()
        assert(os.execute(("ln -s %q %q"):format(dir .. "/10-a.lua", dir .. "/30-link.lua")))
        assert.are.same({ "10-a.lua", "20-b.lua", "30-link.lua" }, assert(check.load(dir)):names())
    end)

    it("names the file and line of a policy that does not compile", function()
        local dir = directory({ ["ok.lua"] = ALLOW_ALL, ["bad.lua"] = "return function(r)\n  if r then\n" })
        local policies, err = check.load(dir)
        assert.is_nil(policies)
        assert.are.equal(dir .. "/bad.lua:3: 'end' expected (to close 'if' at line 2) near <eof>", err)
    end)

    it("refuses a file that does not return a function, or fails at its top level", function()
        local _, err = check.load(directory({ ["n.lua"] = "return 42" }))
        assert.matches("/n%.lua: the script must return a function, it returned number$", err)
        _, err = check.load(directory({ ["e.lua"] = "\n\nerror('boom')" }))
        assert.matches("/e%.lua: e%.lua:3: boom$", err)
    end)

    it("reports a missing or empty directory", function()
        local _, err = check.load("/nonexistent/policies")
        assert.matches("^cannot open policy directory /nonexistent/policies", err)
        local empty = directory({})
        _, err = check.load(empty)
        assert.are.equal("no policy files (*.lua) in " .. empty, err)
    end)

    it("runs policies under the controller's sandbox limits and read-only inputs", function()
        local dir = directory({
            ["1-write.lua"] = [[return function(request)
                if request.metadata.namespace == "w" then request.metadata.namespace = "x" end
                return true end]],
            ["2-loop.lua"] = [[return function(request)
                if request.metadata.namespace == "loop" then while true do end end
                return true end]],
            ["3-memory.lua"] = [[return function(request)
                if request.metadata.namespace == "mem" then
                    local s = "x" while true do s = s .. s end
                end
                return true end]],
            ["4-io.lua"] = [[return function() return io == nil and require == nil end]],
        })
        local policies = assert(check.load(dir))
        local decision, message, name = policies:check(request("w"))
        assert.are.equal("deny", decision)
        assert.are.equal("1-write.lua", name)
        assert.matches('policy inputs are read%-only: cannot set field "namespace"', message)
        _, message = policies:check(request("loop"))
        assert.are.equal('policy "2-loop.lua" failed: ' .. sandbox.BUDGET_EXCEEDED, message)
        _, message = policies:check(request("mem"))
        assert.are.equal('policy "3-memory.lua" failed: ' .. sandbox.MEMORY_EXCEEDED, message)
        assert.are.equal("allow", policies:check(request("fine")))
    end)

    it("takes another reader, as the host's read_scripts", function()
        local policies = assert(check.load("anywhere", {
            read_scripts = function(dir)
                assert.are.equal("anywhere", dir)
                return { { name = "x.lua", source = "return function() return false, 'no' end" } }
            end,
        }))
        assert.are.same({ "deny", "no", "x.lua" }, { policies:check(request("t")) })
        local _, err = check.load("d", { read_scripts = function() return nil, "cannot open d" end })
        assert.are.equal("cannot open d", err)
    end)

    it("decodes JSON as the controller does and names what is wrong", function()
        local value = assert(check.decode('{"a":null,"b":[1]}', "x.json"))
        assert.are.equal(cjson.null, value.a)
        local _, err = check.decode("{", "x.json")
        assert.matches("^x%.json: not JSON: ", err)
        _, err = check.decode("42", "x.json")
        assert.are.equal("x.json: not a JSON object", err)
    end)

    it("reads JSON fixtures, raising with the file's name", function()
        local path = fixtures.root .. "/policies/config.json"
        assert.are.equal("InternalServicesConfig", check.read_json(path).kind)
        assert.has_error(function() check.read_json("/nonexistent.json") end,
            "cannot read /nonexistent.json: /nonexistent.json: No such file or directory")
        local dir = directory({ ["bad.json"] = "[1," })
        local ok, err = pcall(check.read_json, dir .. "/bad.json")
        assert.is_false(ok)
        assert.matches("bad%.json: not JSON", err)
    end)
end)
