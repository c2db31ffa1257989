-- Policy checks for operators: a policy directory evaluated exactly as the
-- controller evaluates it (the same chain, sandbox, instruction budget,
-- memory cap and read-only inputs, from policy.lua and sandbox.lua), for
-- an operator's own busted specs and for `internal-services check-policies`.
--
--   local check = require "internal_services.policy_check"
--   local policies = assert(check.load("policies"))
--   local decision, message, policy = policies:check(request, config)
--   -- decision is "allow" or "deny"
--
-- See "Testing your policy" in policies/README.md.

local cjson = require "cjson"
local policy = require "internal_services.policy"

local check = {}

-- The controller's namespace as the shipped deployment has it; policies
-- see it as context.namespace.
check.NAMESPACE = "internal-services"

-- Reads the *.lua files at the top of dir the way host.read_scripts does
-- (sorted, dotfiles and subdirectories skipped, links followed), with
-- LuaFileSystem, which busted itself depends on.
function check.read_scripts(dir)
    local ok, lfs = pcall(require, "lfs")
    if not ok then
        return nil, "reading a policy directory needs LuaFileSystem (lua-filesystem)"
    end
    local names = {}
    local iter_ok, iter, state = pcall(lfs.dir, dir)
    if not iter_ok then
        return nil, ("cannot open policy directory %s: %s"):format(dir, tostring(iter))
    end
    for name in iter, state do
        if name:sub(1, 1) ~= "." and #name >= 5 and name:sub(-4) == ".lua"
            and lfs.attributes(dir .. "/" .. name, "mode") == "file" then
            names[#names + 1] = name
        end
    end
    table.sort(names)
    local scripts = {}
    for _, name in ipairs(names) do
        local f, err = io.open(dir .. "/" .. name, "rb")
        if not f then return nil, err end
        scripts[#scripts + 1] = { name = name, source = f:read("a") }
        f:close()
    end
    return scripts
end

local Checker = {}
Checker.__index = Checker

-- Loads every policy of dir. opts: namespace (context.namespace, default
-- check.NAMESPACE), read_scripts (a function of dir returning scripts or
-- nil and an error; default check.read_scripts). Returns a checker, or nil
-- and an error that names the file and line at fault ("dir/x.lua:3: ...").
function check.load(dir, opts)
    opts = opts or {}
    local scripts, err = (opts.read_scripts or check.read_scripts)(dir)
    if not scripts then return nil, tostring(err) end
    if #scripts == 0 then return nil, ("no policy files (*.lua) in %s"):format(dir) end
    local chain = policy.new({ namespace = opts.namespace or check.NAMESPACE })
    local ok, load_err, cause = chain:load(scripts)
    if not ok then
        return nil, cause and (dir .. "/" .. cause) or load_err
    end
    return setmetatable({ chain = chain, dir = dir }, Checker)
end

-- The files loaded, in the order they run.
function Checker:names()
    return self.chain:names()
end

-- Evaluates request and config (the InternalServicesConfig object, or nil
-- for none), both tables as decoded from JSON. Returns "allow", or "deny",
-- the message the request's status would carry and the file that denied.
function Checker:check(request, config)
    local allowed, message, name = self.chain:evaluate(request, config)
    if allowed then return "allow" end
    return "deny", message, name
end

-- Decodes JSON text as the controller decodes API objects (null becomes
-- cjson.null). what names the text in the error.
function check.decode(text, what)
    local ok, value = pcall(cjson.decode, text)
    if not ok then return nil, ("%s: not JSON: %s"):format(what, tostring(value)) end
    if type(value) ~= "table" then return nil, ("%s: not a JSON object"):format(what) end
    return value
end

-- Reads and decodes a JSON file (a request or config fixture); raises an
-- error naming the file, for specs.
function check.read_json(path)
    local f, err = io.open(path, "rb")
    if not f then error(("cannot read %s: %s"):format(path, tostring(err)), 2) end
    local text = f:read("a")
    f:close()
    local value, derr = check.decode(text, path)
    if not value then error(derr, 2) end
    return value
end

return check
