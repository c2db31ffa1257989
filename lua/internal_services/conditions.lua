-- The InternalRequest's status: its Succeeded condition and the fields
-- that go with it. Builders return a whole new status table (the old one
-- is left untouched) that the caller sends as {status = ...} to the status
-- subresource.

local quote = require "internal_services.quote"

local conditions = {}

conditions.TYPE = "Succeeded"
conditions.reasons = {
    running = "Running",
    succeeded = "Succeeded",
    failed = "Failed",
    rejected = "Rejected",
}

-- RFC 3339 in UTC, whole seconds, as Kubernetes writes metav1.Time.
function conditions.rfc3339(epoch_seconds)
    return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(epoch_seconds))
end

-- Timestamps may be passed as epoch seconds or already formatted.
local function timestamp(now)
    if type(now) == "number" then return conditions.rfc3339(now) end
    assert(type(now) == "string", "conditions: now must be epoch seconds or an RFC 3339 string")
    return now
end

local function copy(value)
    if type(value) ~= "table" then return value end
    local out = {}
    for k, v in pairs(value) do out[k] = copy(v) end
    return setmetatable(out, getmetatable(value))
end

local function find(list)
    if type(list) ~= "table" then return nil end
    for i, condition in ipairs(list) do
        if type(condition) == "table" and condition.type == conditions.TYPE then return condition, i end
    end
    return nil
end

-- The CRD caps a condition message at 32768 bytes; a longer one makes the
-- API server refuse the whole status write, and the request would never
-- get its outcome. Messages quote request fields, so any may be that long.
conditions.MESSAGE_MAX = 32768
local TRUNCATED = "... (truncated)"

-- Cuts message to MESSAGE_MAX bytes, at a UTF-8 character boundary, saying
-- so at the end.
function conditions.clip(message)
    if #message <= conditions.MESSAGE_MAX then return message end
    return quote.head(message, conditions.MESSAGE_MAX - #TRUNCATED) .. TRUNCATED
end

-- Sets the Succeeded condition in status.conditions in place. The
-- lastTransitionTime only moves when the status value changes, as in
-- metav1 conditions, so it tells how long the request has been in its
-- current state. Returns true when anything changed.
function conditions.set(status, new, now, generation)
    if type(status.conditions) ~= "table" then status.conditions = {} end
    local condition = find(status.conditions)
    local message = conditions.clip(new.message or "")
    local changed = false
    if not condition then
        condition = { type = conditions.TYPE }
        status.conditions[#status.conditions + 1] = condition
        changed = true
    end
    if condition.status ~= new.status then
        condition.lastTransitionTime = timestamp(now)
        changed = true
    elseif condition.lastTransitionTime == nil then
        condition.lastTransitionTime = timestamp(now)
        changed = true
    end
    if condition.status ~= new.status or condition.reason ~= new.reason
        or condition.message ~= message or condition.observedGeneration ~= generation then
        changed = true
    end
    condition.status = new.status
    condition.reason = new.reason
    condition.message = message
    condition.observedGeneration = generation
    return changed
end

-- The Succeeded condition of an InternalRequest, or nil.
function conditions.get(obj)
    local status = type(obj) == "table" and obj.status
    return (find(type(status) == "table" and status.conditions or nil))
end

local FINAL = {
    [conditions.reasons.succeeded] = true,
    [conditions.reasons.failed] = true,
    [conditions.reasons.rejected] = true,
}

-- True once the request has an outcome: reason Succeeded, Failed or
-- Rejected, which is what clients of the API test. The status alone does
-- not tell: the existing Go controller writes a running request as
-- False/Running.
function conditions.is_finished(obj)
    local condition = conditions.get(obj)
    return condition ~= nil and FINAL[condition.reason] == true and condition.status ~= "Unknown"
end

-- True when the request says it runs (reason Running), whichever status
-- the controller that wrote it used for that.
function conditions.is_running(obj)
    local condition = conditions.get(obj)
    return condition ~= nil and condition.reason == conditions.reasons.running
end

local function new_status(request)
    local status = request.status
    -- A JSON null status decodes to cjson.null, which is not a table.
    if type(status) ~= "table" then return {} end
    return copy(status)
end

local function generation(request)
    local meta = request.metadata or {}
    return math.tointeger(meta.generation) or meta.generation
end

local function finish(request, condition, now)
    local status = new_status(request)
    local was_finished = conditions.is_finished(request)
    conditions.set(status, condition, now, generation(request))
    -- The first outcome is the outcome: a later call keeps its time.
    if not (was_finished and status.completionTime) then status.completionTime = timestamp(now) end
    return status
end

-- Status of a request whose PipelineRun pr_ref ("namespace/name") runs.
function conditions.running(request, pr_ref, now, message)
    local status = new_status(request)
    status.pipelineRun = pr_ref
    if status.startTime == nil then status.startTime = timestamp(now) end
    conditions.set(status, {
        status = "Unknown",
        reason = conditions.reasons.running,
        message = message or ("PipelineRun " .. pr_ref .. " is running"),
    }, now, generation(request))
    return status
end

-- Status of a request whose PipelineRun succeeded with results (name ->
-- string).
function conditions.succeeded(request, results, now)
    local status = finish(request, {
        status = "True",
        reason = conditions.reasons.succeeded,
        message = "PipelineRun succeeded",
    }, now)
    status.results = copy(results or {})
    return status
end

local function ended_with(reason)
    return function(request, message, now)
        return finish(request, { status = "False", reason = reason, message = message }, now)
    end
end

-- Status of a request whose PipelineRun failed, could not be created, or
-- was malformed: failed(request, message, now).
conditions.failed = ended_with(conditions.reasons.failed)

-- Status of a request a policy refused, no PipelineRun created:
-- rejected(request, message, now).
conditions.rejected = ended_with(conditions.reasons.rejected)

return conditions
