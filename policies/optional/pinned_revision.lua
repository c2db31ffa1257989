-- Opt-in (copy it into the policy directory to use it): with the git
-- resolver, the `revision` param must be a full 40-character commit SHA, so
-- what runs cannot change under the same request when a branch or tag
-- moves. Hex digits may be lower or upper case (git accepts both).
return function(request)
    -- A malformed request fails the lookup, which denies.
    local ref = request.spec.pipeline.pipelineRef
    if ref.resolver ~= "git" then
        return true
    end
    local revision
    for _, p in ipairs(ref.params or {}) do
        revision = p.name == "revision" and p.value or revision
    end
    if type(revision) ~= "string" then
        return false, 'the git resolver needs a "revision" param holding a full commit SHA'
    end
    if #revision ~= 40 or revision:find("%X") then
        return false, ("git revision %q is not a full 40-character commit SHA"):format(revision)
    end
    return true
end
