-- When the InternalServicesConfig lists spec.allowedGitResolverURLs, a
-- request using the git resolver must name one of them exactly as its `url`
-- param; requests using other resolvers, and configs without the list, are
-- not affected.
local function param(ref, name)
    if type(ref.params) ~= "table" then
        return nil
    end
    for _, p in ipairs(ref.params) do
        if type(p) == "table" and p.name == name then
            return p.value
        end
    end
    return nil
end

return function(request, config)
    local spec = type(request.spec) == "table" and request.spec
    local pipeline = spec and type(spec.pipeline) == "table" and spec.pipeline
    local ref = pipeline and type(pipeline.pipelineRef) == "table" and pipeline.pipelineRef
    if not ref or ref.resolver ~= "git" then
        return true
    end
    local allowed = config and type(config.spec) == "table" and config.spec.allowedGitResolverURLs
    if type(allowed) ~= "table" or #allowed == 0 then
        return true
    end
    local url = param(ref, "url")
    if type(url) ~= "string" then
        return false, 'the git resolver needs a "url" param naming one of allowedGitResolverURLs'
    end
    for _, candidate in ipairs(allowed) do
        if url == candidate then
            return true
        end
    end
    return false, ("git resolver url %q is not in allowedGitResolverURLs"):format(url)
end
