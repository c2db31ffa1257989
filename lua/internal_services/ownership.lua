-- Which InternalRequest a PipelineRun belongs to.
--
-- Our own PipelineRuns carry the request's uid in a label, which settles
-- it. Those of the Go controller this one replaces carry only the
-- request's name and namespace labels and operator-lib's owner annotation
-- ("operator-sdk/primary-resource": "ns/name"); such a run is taken for
-- the request's only when it was not created before the request was, so a
-- request re-created under an old name never adopts its predecessor's run.
local resources = require "internal_services.resources"
local timestamps = require "internal_services.timestamps"

local ownership = {}

local LABELS = resources.labels
local ANNOTATIONS = resources.annotations

local function field(obj, group, key)
    local meta = type(obj) == "table" and obj.metadata
    local map = type(meta) == "table" and meta[group]
    local value = type(map) == "table" and map[key]
    if type(value) ~= "string" or value == "" then return nil end
    return value
end

local function split(ref)
    local ns, name = ref:match("^([^/]+)/([^/]+)$")
    return ns, name
end

-- True for a PipelineRun written by the previous controller: it names a
-- request but carries no request uid.
function ownership.is_legacy(pr)
    return field(pr, "labels", LABELS.uid) == nil and ownership.request_key(pr) ~= nil
end

-- "ns/name" of the request a PipelineRun names: from our request
-- annotation (the name label holds only 63 characters of a longer name),
-- else from its labels, else from the owner annotation when its type is
-- InternalRequest; nil for a run that names none.
function ownership.request_key(pr)
    local ns, name = split(field(pr, "annotations", ANNOTATIONS.request) or "")
    if ns then return ns .. "/" .. name end
    ns, name = field(pr, "labels", LABELS.namespace), field(pr, "labels", LABELS.name)
    if ns and name then return ns .. "/" .. name end
    local owner = field(pr, "annotations", ANNOTATIONS.primary_resource)
    if owner and field(pr, "annotations", ANNOTATIONS.primary_resource_type) == resources.primary_resource_type then
        ns, name = split(owner)
        if ns then return ns .. "/" .. name end
    end
    return nil
end

-- True when pr is the request's PipelineRun.
function ownership.belongs(request, pr)
    if type(pr) ~= "table" or type(pr.metadata) ~= "table" then return false end
    local meta = request.metadata
    local uid = field(pr, "labels", LABELS.uid)
    if uid then return uid == meta.uid end
    if ownership.request_key(pr) ~= meta.namespace .. "/" .. meta.name then return false end
    local created = timestamps.parse(pr.metadata.creationTimestamp)
    local born = timestamps.parse(meta.creationTimestamp)
    return created == nil or born == nil or created >= born
end

-- Of prs, the previous controller's run of the request, or nil. Should
-- there be several (it had no guard against a second), the oldest: the
-- one it would have found first and reported.
function ownership.legacy_of(request, prs)
    local best
    for _, pr in ipairs(prs) do
        if ownership.is_legacy(pr) and ownership.belongs(request, pr) then
            local t = timestamps.parse(pr.metadata.creationTimestamp) or math.huge
            local bt = best and (timestamps.parse(best.metadata.creationTimestamp) or math.huge)
            if not best or t < bt or (t == bt and pr.metadata.name < best.metadata.name) then best = pr end
        end
    end
    return best
end

-- The label selector that finds the previous controller's runs of request.
function ownership.selector(request)
    return string.format("%s=%s,%s=%s", LABELS.name, request.metadata.name,
        LABELS.namespace, request.metadata.namespace)
end

return ownership
