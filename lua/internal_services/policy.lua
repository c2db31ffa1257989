-- The policy chain: admission checks an operator writes as Lua files in the
-- policy directory, evaluated in file-name order before the controller acts
-- on an InternalRequest. See policies/README.md for the policy API.
--
-- Fail closed everywhere: a policy that errors, runs out of budget or
-- memory, or returns anything but true denies; an empty or never-loaded
-- chain denies. A reload that does not compile keeps the last good set, so
-- a bad edit to the ConfigMap never opens the gate.

local metrics = require "internal_services.metrics"
local sandbox = require "internal_services.sandbox"

local policy = {}

-- Deny messages end up in the request's status condition.
policy.MAX_MESSAGE = 1024

local Chain = {}
Chain.__index = Chain

local function nolog() end

-- opts: budget (instructions per policy call, default 1e6), memory (bytes
-- of heap growth per policy call, default 16 MiB), log(level, msg, fields),
-- namespace (the controller's namespace, passed to policies as
-- context.namespace), metrics (internal_services.metrics: denials and
-- errors by policy).
function policy.new(opts)
    opts = opts or {}
    return setmetatable({
        limits = {
            budget = opts.budget or sandbox.DEFAULT_BUDGET,
            memory = opts.memory or sandbox.DEFAULT_MEMORY,
        },
        log = opts.log or nolog,
        metrics = opts.metrics or metrics.none(),
        namespace = opts.namespace,
        policies = {},
        loaded = false,
    }, Chain)
end

local function clip(message)
    if #message > policy.MAX_MESSAGE then
        return message:sub(1, policy.MAX_MESSAGE - 3) .. "..."
    end
    return message
end

local function compile(limits, script)
    local name = script.name
    local env = sandbox.environment()
    local chunk, err = sandbox.compile(script.source, name, env)
    if not chunk then
        return nil, err
    end
    -- The chunk's top level runs under the same limits as a call.
    local ok, fn = sandbox.run(limits, chunk)
    if not ok then
        return nil, ("%s: %s"):format(name, fn)
    end
    if type(fn) ~= "function" then
        return nil, ("%s: the script must return a function, it returned %s"):format(name, type(fn))
    end
    return fn
end

-- scripts: { {name=, source=}, ... }. Compiles all of them; only when every
-- one compiles does the new set replace the old one. Returns true, or nil,
-- an error naming the file and, when a script was at fault, that script's
-- own error ("name.lua:LINE: ...").
function Chain:load(scripts)
    if type(scripts) ~= "table" or #scripts == 0 then
        local err = "no policy files found; keeping the previous policies"
        self.log("error", err, {})
        return nil, err
    end
    local sorted = {}
    for i, script in ipairs(scripts) do
        if type(script) ~= "table" or type(script.name) ~= "string" then
            local err = ("policy file #%d has no name; keeping the previous policies"):format(i)
            self.log("error", err, {})
            return nil, err
        end
        sorted[i] = script
    end
    table.sort(sorted, function(a, b) return a.name < b.name end)

    local compiled = {}
    for i, script in ipairs(sorted) do
        local fn, cause = compile(self.limits, script)
        if not fn then
            local err = ("policy %q rejected, keeping the previous policies: %s"):format(script.name, cause)
            self.log("error", err, { policy = script.name })
            self.metrics:policy_load_failed(script.name)
            return nil, err, cause
        end
        compiled[i] = { name = script.name, fn = fn }
    end
    self.policies = compiled
    self.loaded = true
    self.log("info", "policies loaded", { count = #compiled, names = table.concat(self:names(), ",") })
    return true
end

function Chain:names()
    local names = {}
    for i, p in ipairs(self.policies) do
        names[i] = p.name
    end
    return names
end

-- Runs every policy in order on read-only copies of request, config (the
-- InternalServicesConfig object, or nil when there is none) and context
-- ({namespace = controller namespace}; defaults to the chain's namespace).
-- Returns true, or false, message, policy name for the first denial.
function Chain:evaluate(request, config, context)
    if #self.policies == 0 then
        self.metrics:policy_denied(nil)
        return false, "no policies are loaded: every request is denied", nil
    end
    local ro_request = sandbox.readonly(request)
    local ro_config = config ~= nil and sandbox.readonly(config) or nil
    local ro_context = sandbox.readonly(context or { namespace = self.namespace })

    for _, p in ipairs(self.policies) do
        local ok, verdict, message = sandbox.run(self.limits, p.fn, ro_request, ro_config, ro_context)
        if not ok then
            local err = ("policy %q failed: %s"):format(p.name, verdict)
            self.log("warn", err, { policy = p.name })
            self.metrics:policy_failed(p.name)
            return false, clip(err), p.name
        end
        if verdict ~= true then
            if verdict == false then self.metrics:policy_denied(p.name) else self.metrics:policy_failed(p.name) end
            if verdict == false and (type(message) == "string" or type(message) == "number") and
               tostring(message) ~= "" then
                return false, clip(tostring(message)), p.name
            elseif verdict == false then
                return false, ("denied by policy %q"):format(p.name), p.name
            end
            return false, ("policy %q returned %s instead of true or false and a message"):format(
                p.name, type(verdict)), p.name
        end
    end
    return true
end

return policy
