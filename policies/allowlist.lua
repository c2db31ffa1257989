-- Admits a request only when its namespace on the remote cluster is listed
-- in spec.allowList of the controller's InternalServicesConfig ("config" in
-- the controller's namespace). Without that object nothing is admitted.
local function config_ref(config, context)
    local meta = config and config.metadata
    if type(meta) == "table" and type(meta.namespace) == "string" and type(meta.name) == "string" then
        return meta.namespace .. "/" .. meta.name
    end
    if type(context) == "table" and type(context.namespace) == "string" then
        return context.namespace .. "/config"
    end
    return "config"
end

return function(request, config, context)
    if config == nil then
        return false, ("InternalServicesConfig %s not found: no remote namespace is allowed"):format(
            config_ref(nil, context))
    end
    local namespace = type(request.metadata) == "table" and request.metadata.namespace
    if type(namespace) ~= "string" or namespace == "" then
        return false, "the request has no namespace"
    end
    local list = type(config.spec) == "table" and config.spec.allowList
    if type(list) == "table" then
        for _, allowed in ipairs(list) do
            if allowed == namespace then
                return true
            end
        end
    end
    return false, ("namespace %q is not in the allow list of InternalServicesConfig %s"):format(
        namespace, config_ref(config, context))
end
