local sandbox = require "internal_services.sandbox"

-- Compiles src in a fresh environment and runs it under limits; returns
-- what sandbox.run returns.
local function run(src, limits, ...)
    local fn = assert(sandbox.compile(src, "test.lua", sandbox.environment()))
    return sandbox.run(limits or {}, fn, ...)
end

describe("sandbox environment", function()
    -- Each entry is a script that must not be able to reach the named thing.
    local absent = {
        "io", "os.execute", "os.exit", "os.remove", "os.rename", "os.getenv", "os.tmpname",
        "require", "package", "load", "loadstring", "loadfile", "dofile", "debug",
        "collectgarbage", "setmetatable", "getmetatable", "coroutine", "_G", "xpcall",
        "print", "rawset", "string.dump", "string.pack", "string.unpack", "math.randomseed",
    }
    for _, path in ipairs(absent) do
        it("has no " .. path, function()
            local ok, value = run("return " .. path)
            assert.is_true(ok)
            assert.is_nil(value)
        end)
    end

    it("offers the safe base functions and libraries", function()
        local ok, value = run([[
            local t = {}
            for w in string.gmatch("b a c", "%a") do table.insert(t, w) end
            table.sort(t)
            return table.concat(t, ",") .. " " .. tostring(math.max(1, 2)) .. " " ..
                ("%d"):format(utf8.len("héllo")) .. " " .. type(os.time()) .. " " ..
                select("#", unpack({1, 2, 3})) .. " " .. tostring(pcall(error, "x"))
        ]])
        assert.is_true(ok)
        assert.are.equal("a,b,c 2 5 number 3 false", value)
    end)

    it("gives every script its own library tables", function()
        local env1, env2 = sandbox.environment(), sandbox.environment()
        assert(sandbox.compile("string.upper = nil; table.insert = nil", "a.lua", env1))()
        assert.is_nil(env1.string.upper)
        assert.is_function(env2.string.upper)
        assert.is_function(string.upper)
        assert.is_function(table.insert)
    end)

    it("keeps scripts from reaching the real globals through _ENV", function()
        local ok, value = run([[
            local e = _ENV
            e.marker_from_sandbox = true
            return rawget(_ENV, "string") == string and e.io == nil and e.os.execute == nil
        ]])
        assert.is_true(ok)
        assert.is_true(value)
        assert.is_nil(rawget(_G, "marker_from_sandbox"))
    end)

    it("cannot change the metatable of _G or the string metatable", function()
        local ok, err = run("setmetatable(_G or _ENV, {__index = function() end})")
        assert.is_false(ok)
        assert.matches("attempt to call a nil value", err)
        ok, err = run("rawset(getmetatable(''), '__index', {})")
        assert.is_false(ok)
        assert.matches("attempt to call a nil value", err)
        ok, err = run("local mt = ('').__index; return mt")
        assert.is_true(ok)
        assert.is_nil(err)
        assert.are.equal("HI", ("hi"):upper())
    end)

    it("refuses string.dump and string.pack through string methods", function()
        local ok, err = run("return ('x').dump(function() end)")
        assert.is_false(ok)
        assert.matches("string.dump is not available in policies", err, 1, true)
        ok, err = run("return ('c100000000'):pack('a')")
        assert.is_false(ok)
        assert.matches("string.pack is not available in policies", err, 1, true)
        -- Outside a sandbox run string methods are the real ones.
        assert.are.equal(4, #("i4"):pack(7))
        assert.is_string(string.dump(function() end))
    end)

    it("keeps string methods bounded when the module is loaded again", function()
        package.loaded["internal_services.sandbox"] = nil
        local again = require "internal_services.sandbox"
        package.loaded["internal_services.sandbox"] = sandbox
        for _, box in ipairs({ sandbox, again }) do
            local fn = assert(box.compile("return ('x'):rep(1e9)", "again.lua", box.environment()))
            local ok, err = box.run({}, fn)
            assert.is_false(ok)
            assert.matches("^memory limit exceeded: string.rep", err)
        end
    end)

    it("exposes nothing but string functions through string indexing", function()
        local ok, value = run([[
            local found = {}
            for _, key in ipairs({ "__index", "__sandbox_runs", "__sandbox_shim", "runs", "real_string" }) do
                if ("x")[key] ~= nil then found[#found + 1] = key end
            end
            return table.concat(found, ",")
        ]])
        assert.is_true(ok)
        assert.are.equal("", value)
    end)

    it("compiles text only and names the chunk in errors", function()
        local binary = string.dump(function() return 1 end)
        local fn, err = sandbox.compile(binary, "bin.lua", sandbox.environment())
        assert.is_nil(fn)
        assert.matches("binary chunk", err)
        fn, err = sandbox.compile("return (", "broken.lua", sandbox.environment())
        assert.is_nil(fn)
        assert.matches("^broken%.lua:1:", err)
        fn, err = sandbox.compile(nil, "nil.lua", sandbox.environment())
        assert.is_nil(fn)
        assert.matches("source is not a string", err)
    end)
end)

describe("sandbox limits", function()
    it("stops an infinite loop", function()
        local ok, err = run("while true do end", { budget = 10000 })
        assert.is_false(ok)
        assert.are.equal("instruction budget exceeded", err)
    end)

    it("keeps raising the budget error through pcall", function()
        local ok, err = run([[
            local n = 0
            while true do
                pcall(function() while true do n = n + 1 end end)
                pcall(error, "again")
            end
        ]], { budget = 10000 })
        assert.is_false(ok)
        assert.are.equal("instruction budget exceeded", err)
    end)

    it("never lets a script run on after catching the budget error", function()
        local caught = 0
        local ok, err = run([[
            local report = ...
            local spin = function() while true do end end
            while true do
                pcall(spin)
                report()
            end
        ]], { budget = 10000, step = 1000 }, function()
            caught = caught + 1
            if caught > 100 then error("the script kept running") end
        end)
        assert.is_false(ok)
        assert.are.equal("instruction budget exceeded", err)
        assert.are.equal(0, caught)
    end)

    it("reports the budget even when the script raises its own error after catching it", function()
        local ok, err = run([[
            local caught = pcall(function() while true do end end)
            error("my own error")
        ]], { budget = 10000 })
        assert.is_false(ok)
        assert.are.equal("instruction budget exceeded", err)
    end)

    it("stops infinite recursion", function()
        local ok, err = run("local function f() return f() end return f()", { budget = 10000 })
        assert.is_false(ok)
        assert.are.equal("instruction budget exceeded", err)
        ok, err = run("local function f() return 1 + f() end return f()",
            { budget = 1e8, memory = 1024 * 1024 * 1024 })
        assert.is_false(ok)
        assert.matches("stack overflow", err)
    end)

    it("stops a growing table", function()
        local ok, err = run([[
            local t = {}
            while true do t[#t + 1] = {1, 2, 3, 4, 5, 6, 7, 8} end
        ]], { budget = 1e9, memory = 4 * 1024 * 1024 })
        assert.is_false(ok)
        assert.are.equal("memory limit exceeded", err)
    end)

    it("stops a doubling string", function()
        local ok, err = run("local s = 'x' while true do s = s .. s end",
            { budget = 1e9, memory = 4 * 1024 * 1024 })
        assert.is_false(ok)
        assert.matches("^memory limit exceeded", err)
    end)

    it("refuses a huge string.rep before building it, both ways of calling it", function()
        local before = collectgarbage("count")
        for _, src in ipairs({ "return string.rep('x', 1e9)", "return ('x'):rep(1e9)",
                               "return ('ab'):rep(1e8, ',')" }) do
            local ok, err = run(src)
            assert.is_false(ok)
            assert.matches("^memory limit exceeded: string.rep would build", err)
        end
        assert.is_true(collectgarbage("count") - before < 1024 * 1024 / 1024 * 64)
    end)

    it("keeps the memory refusal through pcall", function()
        local ok, err = run([[
            while true do pcall(string.rep, "x", 1e9) end
        ]])
        assert.is_false(ok)
        assert.matches("^memory limit exceeded: string.rep", err)
    end)

    it("refuses table.concat and string.format results over the cap", function()
        local ok, err = run([[
            local big = ("x"):rep(100000)
            local t = {}
            for i = 1, 1000 do t[i] = big end
            return table.concat(t)
        ]], { budget = 1e8 })
        assert.is_false(ok)
        assert.matches("^memory limit exceeded: table.concat would build", err)
        ok, err = run([[
            local big = ("x"):rep(1000000)
            local t = {}
            for i = 1, 100 do t[i] = big end
            return string.format(("%s"):rep(100), unpack(t))
        ]], { budget = 1e8 })
        assert.is_false(ok)
        assert.matches("^memory limit exceeded: string.format would build", err)
    end)

    it("keeps gsub replacements from multiplying a string in one call", function()
        local ok, err = run([[
            local s = ("x"):rep(100000)
            return s:gsub("x", ("y"):rep(1000))
        ]], { budget = 1e9, memory = 8 * 1024 * 1024 })
        assert.is_false(ok)
        assert.matches("^memory limit exceeded", err)
    end)

    it("charges large string scans to the budget", function()
        local ok, err = run([[
            local s = ("x"):rep(1000000)
            while true do s:find("y", 1, true) end
        ]], { budget = 100000 })
        assert.is_false(ok)
        assert.are.equal("instruction budget exceeded", err)
    end)

    it("does not let a nested coroutine escape (no coroutine library)", function()
        local ok, err = run("return coroutine.wrap(function() while true do end end)()")
        assert.is_false(ok)
        assert.matches("attempt to index a nil value", err)
    end)

    it("returns every result of a successful run", function()
        assert.are.same({ true, 1, nil, "three" }, { run("return 1, nil, 'three'") })
        assert.are.same({ true, 42 }, { run("return ... * 2", nil, 21) })
    end)

    it("reports non-string error values", function()
        local ok, err = run("error({})")
        assert.is_false(ok)
        assert.are.equal("(error object is a table value)", err)
    end)

    it("leaves no hook or limit behind", function()
        run("while true do end", { budget = 1000 })
        local n = 0
        for i = 1, 3e6 do n = n + i end
        assert.are.equal(4500001500000, n)
        assert.are.equal("xxx", ("x"):rep(3))
        assert.are.equal(20 * 1024 * 1024, #("x"):rep(20 * 1024 * 1024))
    end)
end)

describe("bounded string functions", function()
    -- They must behave like the real ones for ordinary inputs.
    local cases = {
        { "hello world", "o", "0" },
        { "hello world", "(o)", "[%1]" },
        { "hello world", "(l)(l)", "%2%1" },
        { "hello world", "%w+", "<%0>" },
        { "hello world", "^h", "H" },
        { "hello world", "d$", "D!" },
        { "cost: 5$", "%$$", "USD" },
        { "100%", "%%", "%%%%" },
        { "abc", "", "-" },
        { "abc", "()", "%1" },
        { "a,b,,c", ",", ";", 2 },
        { "x = 1, y = 2", "(%w+) = (%w+)", "%2 = %1" },
    }
    for _, c in ipairs(cases) do
        it(("gsub(%q, %q, %q) matches string.gsub"):format(c[1], c[2], c[3]), function()
            local expected = { string.gsub(c[1], c[2], c[3], c[4]) }
            local ok, out, n = run("return string.gsub(...)", nil, c[1], c[2], c[3], c[4])
            assert.is_true(ok)
            assert.are.same(expected, { out, n })
        end)
    end

    it("gsub with tables and functions matches string.gsub", function()
        local ok, a, b, c = run([[
            local map = { hello = "HI" }
            return ("hello world"):gsub("%w+", map),
                   (("hello world"):gsub("(%w+)", function(w) return #w end)),
                   (("k=v"):gsub("(%w)=(%w)", function(k, v) return v .. "=" .. k end))
        ]])
        assert.is_true(ok)
        assert.are.equal("HI world", a)
        assert.are.equal("5 5", b)
        assert.are.equal("v=k", c)
    end)

    it("gsub reports invalid replacements like string.gsub", function()
        local ok, err = run("return ('abc'):gsub('b', '%9')")
        assert.is_false(ok)
        assert.matches("invalid capture index %%9", err)
        ok, err = run("return ('abc'):gsub('b', '%x')")
        assert.is_false(ok)
        assert.matches("invalid use of '%%' in replacement string", err)
        ok, err = run("return ('abc'):gsub('b', function() return {} end)")
        assert.is_false(ok)
        assert.matches("invalid replacement value %(a table%)", err)
    end)

    it("rep, format and concat work for ordinary sizes", function()
        local ok, a, b, c = run([[
            return ("ab"):rep(3, "-"), ("%s=%d"):format("n", 5), table.concat({1, "x", 2.5}, "|")
        ]])
        assert.is_true(ok)
        assert.are.equal("ab-ab-ab", a)
        assert.are.equal("n=5", b)
        assert.are.equal("1|x|2.5", c)
    end)
end)

describe("read-only copies", function()
    local original = { metadata = { name = "n", labels = { a = "1" } }, list = { "x", "y" } }
    original.self = original

    it("reads like the original", function()
        local ro = sandbox.readonly(original)
        local ok, name, label, count, second, keys = run([[
            local r = ...
            local keys = {}
            for k in pairs(r.metadata) do keys[#keys + 1] = k end
            table.sort(keys)
            local items = {}
            for _, v in ipairs(r.list) do items[#items + 1] = v end
            return r.metadata.name, r.metadata.labels.a, #r.list, r.self.list[2],
                   table.concat(keys, ",") .. ";" .. table.concat(items, ",") ..
                   ";" .. tostring(next(r.list)) .. ";" .. tostring(rawget(r.list, 1)) ..
                   ";" .. rawlen(r.list) .. ";" .. tostring(next({}) == nil)
        ]], nil, ro)
        assert.is_true(ok)
        assert.are.equal("n", name)
        assert.are.equal("1", label)
        assert.are.equal(2, count)
        assert.are.equal("y", second)
        assert.are.equal("labels,name;x,y;1;x;2;true", keys)
        assert.is_true(sandbox.is_readonly(ro))
    end)

    local writes = {
        "r.metadata.name = 'changed'",
        "r.new = 1",
        "r.list[3] = 'z'",
        "table.insert(r.list, 'z')",
        "table.remove(r.list)",
        "table.sort(r.list, function(a, b) return a > b end)",
        "r.self.metadata.labels.a = nil",
    }
    for _, src in ipairs(writes) do
        it("refuses " .. src, function()
            local ok, err = run("local r = ... " .. src, nil, sandbox.readonly(original))
            assert.is_false(ok)
            assert.matches("policy inputs are read-only: cannot set field", err, 1, true)
            assert.are.equal("n", original.metadata.name)
            assert.are.equal("1", original.metadata.labels.a)
            assert.are.same({ "x", "y" }, original.list)
            assert.is_nil(rawget(original, "new"))
        end)
    end

    it("is a copy: later changes to the original do not show", function()
        local source = { a = { b = 1 } }
        local ro = sandbox.readonly(source)
        source.a.b = 2
        assert.are.equal(1, ro.a.b)
    end)

    it("drops functions and userdata with metatables, keeps cjson.null", function()
        local cjson = require "cjson"
        local ro = sandbox.readonly({ f = print, file = io.stdout, null = cjson.null, n = 1 })
        assert.is_nil(ro.f)
        assert.is_nil(ro.file)
        assert.are.equal(cjson.null, ro.null)
        assert.are.equal(1, ro.n)
    end)
end)
