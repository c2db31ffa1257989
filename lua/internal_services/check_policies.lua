-- The main module of `internal-services check-policies`: the host runs it
-- instead of the controller, with the policy directory in
-- host.config.policy_dir and the request (and config) the command was given
-- in host.config.args, and exits with the code and line it hands to
-- host.shutdown: 0 allow, 1 deny, 2 when nothing could be decided.

local check = require "internal_services.policy_check"

local M = {}

M.ALLOW, M.DENY, M.ERROR = 0, 1, 2

-- cfg: host.config, whose args are { request file, its text [, config
-- file, its text] }; read_scripts: host.read_scripts. Returns the exit
-- code and the line to print.
function M.run(cfg, read_scripts)
    local args = cfg.args or {}
    if type(args[1]) ~= "string" or type(args[2]) ~= "string" then
        return M.ERROR, "no request given"
    end
    local request, err = check.decode(args[2], args[1])
    if not request then return M.ERROR, err end
    local config
    if args[3] ~= nil then
        config, err = check.decode(args[4] or "", args[3])
        if not config then return M.ERROR, err end
    end
    local policies, load_err = check.load(cfg.policy_dir, {
        namespace = cfg.namespace, read_scripts = read_scripts,
    })
    if not policies then return M.ERROR, load_err end
    local decision, message, name = policies:check(request, config)
    if decision == "allow" then
        return M.ALLOW, ("allow (%s)"):format(table.concat(policies:names(), ", "))
    end
    return M.DENY, ("deny (%s): %s"):format(tostring(name), tostring(message))
end

function M.start()
    local host = require "host"
    local ok, code, line = pcall(M.run, host.config, host.read_scripts)
    if not ok then code, line = M.ERROR, tostring(code) end
    host.shutdown(code, line)
end

return M
