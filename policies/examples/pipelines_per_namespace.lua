-- Example: which pipelines each remote namespace may run. A pipeline is
-- known by the cluster resolver's `name` param or, with the git resolver,
-- by its `pathInRepo`. A namespace missing from the table may run nothing;
-- other resolvers are refused because their pipelines cannot be named here.
local allowed = {
    ["tenant-a"] = { ["push-artifacts"] = true, ["sign-release"] = true },
    ["tenant-b"] = { ["pipelines/push-artifacts.yaml"] = true },
}

local key_param = { cluster = "name", git = "pathInRepo" }

return function(request)
    local namespace = request.metadata and request.metadata.namespace
    local ref = request.spec and request.spec.pipeline and request.spec.pipeline.pipelineRef
    local resolver = ref and ref.resolver
    local wanted = key_param[resolver]
    if not wanted then
        return false, ("pipelines from the %q resolver are not allowed here"):format(tostring(resolver))
    end
    local pipeline
    for _, p in ipairs(ref.params or {}) do
        if p.name == wanted then
            pipeline = p.value
        end
    end
    if pipeline == nil then
        return false, ("the %s resolver needs a %q param"):format(resolver, wanted)
    end
    local permitted = allowed[namespace]
    if not (permitted and permitted[pipeline]) then
        return false, ("namespace %q may not run pipeline %q"):format(tostring(namespace), tostring(pipeline))
    end
    return true
end
