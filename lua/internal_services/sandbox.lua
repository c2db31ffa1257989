-- The policy sandbox: a restricted environment per script, text-only
-- compilation, and runs under an instruction budget and a memory cap.
--
-- Policies are written by operators but read request content written by
-- tenants of the remote cluster, and they run inside the controller's one
-- Lua state and one event loop. So a policy must not reach anything that
-- touches the process (io, os.execute, require, debug, load...), must not
-- hang the loop (instruction budget) and must not exhaust the state's memory
-- (memory cap). Whatever goes wrong is reported as an error string; the
-- caller decides (policy.lua denies: fail closed).
--
-- Limits and why they exist:
-- * budget: a count hook on the policy's own coroutine counts VM
--   instructions; past the budget it raises "instruction budget exceeded",
--   so a loop cannot stall the event loop. Once tripped the hook fires on
--   every instruction: a pcall in the policy can catch the error but can
--   never run another instruction of its own, so the error reaches the top.
-- * memory: the same hook compares the heap (collectgarbage("count")) with
--   its size when the run started; past the cap (after a full collection,
--   so garbage is not counted) it raises "memory limit exceeded", sticky in
--   the same way, so a growing table or string cannot take the memory the
--   rest of the controller needs.
-- * C calls: the hook sees VM instructions only, so string functions that
--   build a string in one call (string.rep, string.format, table.concat)
--   check the size of their result first and refuse it; string.gsub expands
--   replacements as Lua code under the hook; and the functions that scan or
--   build strings charge their bytes to the instruction budget. string.dump
--   and string.pack are not offered (nor through string methods).
-- * Coroutines, setmetatable and getmetatable are not offered: a coroutine
--   created by a script would not carry the hook, and metatables would let
--   a script run code outside its run (__gc) or reach the string metatable.
-- Not bounded: Lua patterns can backtrack badly inside one C call (several
-- unbounded repetitions over a long subject); policies should check a
-- string's length before matching it with such a pattern. The state-wide
-- allocator cap of the host remains the last resort for what a single
-- instruction can allocate (a concatenation of many operands).

local sandbox = {}

local real_string = string
local real_rep, real_format, real_gsub = string.rep, string.format, string.gsub
local real_sub, real_byte, real_find = string.sub, string.byte, string.find
local real_concat, real_pack = table.concat, table.pack
local real_next, real_rawget, real_rawlen = next, rawget, rawlen
local real_tostring, real_type, real_error = tostring, type, error
local co_create, co_resume, co_running = coroutine.create, coroutine.resume, coroutine.running
local sethook, gc = debug.sethook, collectgarbage

sandbox.DEFAULT_BUDGET = 1000000
sandbox.DEFAULT_MEMORY = 16 * 1024 * 1024
-- Instructions between two hook calls: a per-instruction hook costs about
-- ten times the run time, and eight keeps the heap overshoot of a doubling
-- loop (s = s .. s) to a few doublings before the check.
sandbox.HOOK_STEP = 8

-- Bytes a string function may scan or build per instruction it is charged.
sandbox.BYTES_PER_INSTRUCTION = 32
-- Full collections a run may trigger before its heap growth counts as is.
sandbox.MAX_COLLECTIONS = 4

sandbox.BUDGET_EXCEEDED = "instruction budget exceeded"
sandbox.MEMORY_EXCEEDED = "memory limit exceeded"

-- The state of each running sandbox, by coroutine. Weak keys: a finished
-- coroutine takes its entry with it. Kept in the registry (out of scripts'
-- reach) so that every instance of this module, and the string shim below,
-- agree on which coroutines are sandboxed even if the module is loaded again.
local REGISTRY_KEY = "internal_services.sandbox.runs"
local registry = debug.getregistry()
local runs = registry[REGISTRY_KEY] or setmetatable({}, { __mode = "k" })
registry[REGISTRY_KEY] = runs

local function current_run()
    return runs[co_running()]
end

-- Work done inside one C call is invisible to the count hook, so string
-- functions charge the bytes they scan or build to the instruction budget.
local function charge(bytes)
    local run = current_run()
    if run then
        run.charge(bytes // sandbox.BYTES_PER_INSTRUCTION)
    end
end

-- Refuses (for the rest of the run) a C call that would build `size` bytes
-- past the memory cap. Outside a run the default cap applies.
local function reserve(what, size)
    local run = current_run()
    local fits
    if run then
        fits = run.fits(size)
    else
        fits = size <= sandbox.DEFAULT_MEMORY
    end
    if not fits then
        local message = real_format("%s: %s would build %.0f bytes", sandbox.MEMORY_EXCEEDED, what, size)
        if run then
            run.trip(message)
        end
        real_error(message, 0)
    end
    charge(size)
end

local function metered(fn)
    return function(s, ...)
        if real_type(s) == "string" then
            charge(#s)
        end
        return fn(s, ...)
    end
end

local function bounded_rep(s, n, sep)
    if real_type(s) == "number" then s = real_tostring(s) end
    if real_type(sep) == "number" then sep = real_tostring(sep) end
    if real_type(s) == "string" and math.type(n) ~= nil and n > 0 then
        local seplen = real_type(sep) == "string" and #sep or 0
        reserve("string.rep", #s * n + seplen * (n - 1))
    end
    return real_rep(s, n, sep)
end

local function bounded_concat(t, sep, i, j)
    -- Sum the lengths first (t may hold the same large string many times).
    i = i or 1
    j = j or #t
    local seplen = real_type(sep) == "string" and #sep or 0
    local size = 0
    for k = i, j do
        local v = t[k]
        if real_type(v) == "string" then
            size = size + #v + seplen
        elseif real_type(v) == "number" then
            size = size + 24 + seplen
        end
    end
    reserve("table.concat", size)
    return real_concat(t, sep, i, j)
end

local function bounded_format(fmt, ...)
    -- Each conversion yields at most its argument or a short number (width
    -- and precision are limited to two digits by Lua).
    local size = real_type(fmt) == "string" and #fmt or 0
    local args = real_pack(...)
    for k = 1, args.n do
        local v = args[k]
        size = size + 128 + (real_type(v) == "string" and #v or 0)
    end
    reserve("string.format", size)
    return real_format(fmt, ...)
end

-- string.gsub expands a replacement string in C, so one call can repeat a
-- large replacement over many matches. The bounded version hands gsub a
-- replacement function instead (with position captures around the pattern
-- to know each whole match): the expansion then runs as Lua code, under the
-- hook, and the growing result is seen by the memory check.
local function parse_replacement(repl)
    local pieces, i = {}, 1
    while i <= #repl do
        local p = real_find(repl, "%", i, true)
        if not p then
            pieces[#pieces + 1] = real_sub(repl, i)
            break
        end
        if p > i then
            pieces[#pieces + 1] = real_sub(repl, i, p - 1)
        end
        local c = real_sub(repl, p + 1, p + 1)
        if c == "%" then
            pieces[#pieces + 1] = "%"
        elseif real_find(c, "^%d$") then
            pieces[#pieces + 1] = real_byte(c) - 48
        else
            real_error("invalid use of '%' in replacement string", 3)
        end
        i = p + 2
    end
    return pieces
end

local function wrap_pattern(pattern)
    local anchor = real_sub(pattern, 1, 1) == "^"
    local body = anchor and real_sub(pattern, 2) or pattern
    local dollar = false
    if real_sub(body, -1) == "$" then
        -- A trailing "$" anchors unless escaped by an odd run of "%".
        local escapes = #real_sub(body, 1, -2) - #real_gsub(real_sub(body, 1, -2), "%%+$", "")
        if escapes % 2 == 0 then
            dollar = true
            body = real_sub(body, 1, -2)
        end
    end
    return (anchor and "^" or "") .. "()" .. body .. "()" .. (dollar and "$" or "")
end

local function bounded_gsub(s, pattern, repl, n)
    if real_type(s) == "number" then s = real_tostring(s) end
    if real_type(pattern) == "number" then pattern = real_tostring(pattern) end
    local rtype = real_type(repl)
    if real_type(s) ~= "string" or real_type(pattern) ~= "string" or
       (rtype ~= "string" and rtype ~= "number" and rtype ~= "table" and rtype ~= "function") then
        return real_gsub(s, pattern, repl, n) -- raises the usual argument error
    end
    charge(#s)
    local pieces = (rtype == "string" or rtype == "number") and parse_replacement(real_tostring(repl))

    local function replace(first, ...)
        local caps = real_pack(...)
        local last = caps[caps.n]
        caps.n = caps.n - 1
        local whole = real_sub(s, first, last - 1)
        if pieces then
            local out = {}
            for k = 1, #pieces do
                local piece = pieces[k]
                if real_type(piece) == "number" then
                    if piece == 0 or (piece == 1 and caps.n == 0) then
                        piece = whole
                    elseif piece > caps.n then
                        real_error(real_format("invalid capture index %%%d in replacement string", piece), 0)
                    else
                        piece = real_tostring(caps[piece])
                    end
                end
                out[k] = piece
            end
            return real_concat(out)
        end
        local value
        if rtype == "table" then
            value = repl[caps.n == 0 and whole or caps[1]]
        elseif caps.n == 0 then
            value = repl(whole)
        else
            value = repl(table.unpack(caps, 1, caps.n))
        end
        if not value then
            return whole
        elseif real_type(value) ~= "string" and real_type(value) ~= "number" then
            real_error("invalid replacement value (a " .. real_type(value) .. ")", 0)
        end
        return value
    end

    return real_gsub(s, wrap_pattern(pattern), replace, n)
end

local function refused(name)
    return function()
        real_error(name .. " is not available in policies", 2)
    end
end

-- The string library a script sees, as its `string` table and through
-- string methods.
local sandbox_string = {
    byte = real_string.byte, char = real_string.char, len = real_string.len,
    find = metered(real_find), match = metered(real_string.match),
    gmatch = metered(real_string.gmatch), lower = metered(real_string.lower),
    upper = metered(real_string.upper), reverse = metered(real_string.reverse),
    sub = metered(real_sub),
    rep = bounded_rep, format = bounded_format, gsub = bounded_gsub,
}

-- Strings share one metatable whose __index is the string library, so
-- ("x"):rep(n) reaches string functions without going through a script's
-- environment, and that table is the state's own. The shim below takes its
-- place: outside a sandbox run every name resolves to the real function as
-- before; inside a run a name resolves to the sandbox's version, and the
-- functions a script has no use for (dump, pack...) refuse.
local function install_string_shim()
    local mt = getmetatable("")
    local shim = {}
    for name, outside in pairs(real_string) do
        local inside = sandbox_string[name] or refused("string." .. name)
        shim[name] = function(...)
            if runs[co_running()] then
                return inside(...)
            end
            return outside(...)
        end
    end
    mt.__index = setmetatable(shim, { __index = real_string })
end
install_string_shim()

-- Read-only copies of policy inputs. Each table becomes an empty proxy whose
-- metatable reads from a private copy and refuses writes; the sandbox's
-- next, rawget, rawlen and pairs see through proxies so they behave like
-- plain tables to the script.
local backing = setmetatable({}, { __mode = "k" })

local function refuse_write(_, key)
    real_error(real_format("policy inputs are read-only: cannot set field %q", real_tostring(key)), 2)
end

local readonly_mt = {
    __index = function(proxy, key) return backing[proxy][key] end,
    __newindex = refuse_write,
    __len = function(proxy) return #backing[proxy] end,
    __pairs = function(proxy) return real_next, backing[proxy], nil end,
    __metatable = false,
    __name = "read-only table",
}

local function copy(value, seen)
    local t = real_type(value)
    if t == "table" then
        if backing[value] then
            return value -- already a read-only copy
        end
        if seen[value] then
            return seen[value]
        end
        local data = {}
        local proxy = setmetatable({}, readonly_mt)
        seen[value] = proxy
        backing[proxy] = data
        for k, v in real_next, value do
            local ck, cv = copy(k, seen), copy(v, seen)
            if ck ~= nil and cv ~= nil then
                data[ck] = cv
            end
        end
        return proxy
    elseif t == "function" or t == "thread" or (t == "userdata" and debug.getmetatable(value) ~= nil) then
        -- Only data crosses into a policy: a host function or a userdata
        -- with methods would run outside the sandbox. (cjson.null, a light
        -- userdata without metatable, is kept.)
        return nil
    end
    return value
end

-- Deep read-only copy of a value (tables become read-only proxies; strings,
-- numbers, booleans and cjson.null are kept; functions and userdata with a
-- metatable are dropped). Writes raise "policy inputs are read-only".
function sandbox.readonly(value)
    return copy(value, {})
end

function sandbox.is_readonly(value)
    return backing[value] ~= nil
end

local function see_through(t)
    return backing[t] or t
end

local function sandbox_next(t, k)
    return real_next(see_through(t), k)
end

local function sandbox_rawget(t, k)
    return real_rawget(see_through(t), k)
end

local function sandbox_rawlen(t)
    return real_rawlen(see_through(t))
end

local function copy_library(lib, names, overrides)
    local out = {}
    for _, name in ipairs(names) do
        out[name] = lib[name]
    end
    for name, fn in pairs(overrides or {}) do
        out[name] = fn
    end
    return out
end

-- A fresh environment: only pure functions, fresh library tables (a script
-- changing its `string` table changes only its own), no _G, no way to the
-- state's globals, registry, metatables, files or processes.
function sandbox.environment()
    local env = {
        assert = assert, error = error, ipairs = ipairs, pairs = pairs, pcall = pcall,
        select = select, tonumber = tonumber, tostring = tostring, type = type,
        rawequal = rawequal, next = sandbox_next, rawget = sandbox_rawget,
        rawlen = sandbox_rawlen, unpack = table.unpack,
    }
    env.string = copy_library(sandbox_string, {}, sandbox_string)
    env.table = copy_library(table, { "insert", "move", "pack", "remove", "sort", "unpack" },
        { concat = bounded_concat })
    env.math = copy_library(math, {
        "abs", "acos", "asin", "atan", "ceil", "cos", "exp", "floor", "fmod", "huge", "log",
        "max", "maxinteger", "min", "mininteger", "modf", "pi", "random", "sin", "sqrt",
        "tan", "tointeger", "type", "ult",
    })
    env.utf8 = copy_library(utf8, { "char", "charpattern", "codes", "codepoint", "len", "offset" })
    env.os = copy_library(os, { "clock", "date", "time" })
    return env
end

-- Compiles source text (never bytecode) as a chunk whose globals are env.
-- Errors name the chunk: "allowlist.lua:3: ...".
function sandbox.compile(source, name, env)
    if real_type(source) ~= "string" then
        return nil, real_format("%s: source is not a string", name)
    end
    return load(source, "=" .. name, "t", env)
end

-- Runs fn(...) on a fresh coroutine under the limits ({budget=, memory=,
-- step=}, all optional; step is the number of instructions between two
-- hook calls). Returns true followed by fn's results, or false and an
-- error string. When a limit was hit the error is the limit's message
-- ("instruction budget exceeded", "memory limit exceeded..."), whatever the
-- script did with the error on the way.
function sandbox.run(limits, fn, ...)
    limits = limits or {}
    local budget = limits.budget or sandbox.DEFAULT_BUDGET
    local memory = limits.memory or sandbox.DEFAULT_MEMORY
    local step = limits.step or sandbox.HOOK_STEP
    local co = co_create(fn)
    local base = gc("count") * 1024
    local count, collections = 0, 0
    local run = {}

    function run.trip(message)
        run.failure = run.failure or message
        -- From now on every instruction raises: see the header.
        sethook(co, function() real_error(run.failure, 0) end, "", 1)
        real_error(run.failure, 0)
    end

    function run.charge(instructions)
        count = count + instructions
        if count > budget then
            run.trip(sandbox.BUDGET_EXCEEDED)
        end
    end

    -- Whether `extra` more bytes fit under the cap. Garbage counts in the
    -- heap size, so a few full collections are allowed before refusing;
    -- only a few, because each one walks the whole state.
    function run.fits(extra)
        if gc("count") * 1024 - base + extra <= memory then
            return true
        end
        if collections >= sandbox.MAX_COLLECTIONS then
            return false
        end
        collections = collections + 1
        gc("collect")
        return gc("count") * 1024 - base + extra <= memory
    end

    local function hook()
        run.charge(step)
        if not run.fits(0) then
            run.trip(sandbox.MEMORY_EXCEEDED)
        end
    end

    runs[co] = run
    sethook(co, hook, "", step)
    local results = real_pack(co_resume(co, ...))
    sethook(co)
    runs[co] = nil

    if run.failure then
        return false, run.failure
    end
    if not results[1] then
        local err = results[2]
        if real_type(err) ~= "string" then
            err = real_format("(error object is a %s value)", real_type(err))
        end
        return false, err
    end
    if coroutine.status(co) ~= "dead" then
        return false, "the script yielded"
    end
    return table.unpack(results, 1, results.n)
end

return sandbox
