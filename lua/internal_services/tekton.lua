-- Reading a Tekton v1 PipelineRun: where it stands, what it produced, and
-- how to stop it.

local cjson = require "cjson"
local duration = require "internal_services.duration"
local timestamps = require "internal_services.timestamps"

local tekton = {}

-- The Succeeded condition of a PipelineRun, or nil.
local function succeeded_condition(pr)
    local status = type(pr) == "table" and pr.status
    local conditions = type(status) == "table" and status.conditions
    if type(conditions) ~= "table" then return nil end
    for _, condition in ipairs(conditions) do
        if type(condition) == "table" and condition.type == "Succeeded" then return condition end
    end
    return nil
end

local function text(value)
    return type(value) == "string" and value or ""
end

-- "pending" | "running" | "succeeded" | "failed", then the Succeeded
-- condition's message and reason ("" when absent). Tekton reports every
-- unsuccessful end (Failed, Cancelled, PipelineRunTimeout, ...) as False.
function tekton.state(pr)
    local condition = succeeded_condition(pr)
    if not condition then
        local started = type(pr) == "table" and type(pr.status) == "table" and pr.status.startTime
        return started and "running" or "pending", "", ""
    end
    local message, reason = text(condition.message), text(condition.reason)
    if condition.status == "True" then return "succeeded", message, reason end
    if condition.status == "False" then return "failed", message, reason end
    if reason == "PipelineRunPending" then return "pending", message, reason end
    return "running", message, reason
end

-- True once the PipelineRun has finished, successfully or not.
function tekton.is_done(pr)
    local condition = succeeded_condition(pr)
    return condition ~= nil and (condition.status == "True" or condition.status == "False")
end

-- JSON with object keys sorted, so the same result always encodes to the
-- same string and a status update is only sent when something changed.
--
-- Strings keep "/" as is: this cjson escapes it as "\/", which is valid
-- but noisy in a value people read (image references, URLs).
local function encode_scalar(value)
    return (cjson.encode(value):gsub("\\(.)", function(c)
        if c == "/" then return "/" end
        return "\\" .. c
    end))
end

local function encode_stable(value)
    if type(value) ~= "table" then return encode_scalar(value) end
    local is_array = cjson.array_mt ~= nil and getmetatable(value) == cjson.array_mt
        or #value > 0 or next(value) == nil
    if is_array then
        local parts = {}
        for i = 1, #value do parts[i] = encode_stable(value[i]) end
        return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for key in pairs(value) do keys[#keys + 1] = tostring(key) end
    table.sort(keys)
    local parts = {}
    for i, key in ipairs(keys) do
        parts[i] = encode_scalar(key) .. ":" .. encode_stable(value[key])
    end
    return "{" .. table.concat(parts, ",") .. "}"
end
tekton.encode_stable = encode_stable

-- pr[part][field] when both are tables, else nil.
local function table_at(pr, part, field)
    local outer = type(pr) == "table" and pr[part]
    local inner = type(outer) == "table" and outer[field]
    return type(inner) == "table" and inner or nil
end

-- The PipelineRun's results as name -> string. Tekton v1 result values are
-- a string, an array of strings or an object of strings; the latter two are
-- JSON-encoded so that no result is lost in the request's string map.
function tekton.results(pr)
    local out = {}
    local results = table_at(pr, "status", "results")
    if not results then return out end
    for _, result in ipairs(results) do
        if type(result) == "table" and type(result.name) == "string" then
            local value = result.value
            if type(value) == "string" then
                out[result.name] = value
            elseif value == nil or value == cjson.null then
                out[result.name] = ""
            else
                out[result.name] = encode_stable(value)
            end
        end
    end
    return out
end

-- Names of the TaskRuns the PipelineRun started (status.childReferences),
-- in its order; other kinds of child (CustomRun) are left out.
function tekton.child_taskruns(pr)
    local out = {}
    local refs = table_at(pr, "status", "childReferences")
    if not refs then return out end
    for _, ref in ipairs(refs) do
        if type(ref) == "table" and ref.kind == "TaskRun" and type(ref.name) == "string" and ref.name ~= "" then
            out[#out + 1] = ref.name
        end
    end
    return out
end

-- The pipeline timeout Tekton applies to pr, in seconds (0 = none), and
-- its text: spec.timeouts.pipeline as Tekton's webhook defaulted it, else
-- default (Tekton's default-timeout-minutes, for a PipelineRun no webhook
-- saw). Then the time Tekton counts it from: status.startTime, else the
-- creation time (a run Tekton never picked up), else nil.
function tekton.timeout(pr, default)
    local timeouts = table_at(pr, "spec", "timeouts")
    local text = timeouts and timeouts.pipeline or nil
    local seconds = type(text) == "string" and duration.parse(text) or nil
    if not seconds then
        seconds, text = default, duration.format(default)
    end
    local status = type(pr) == "table" and type(pr.status) == "table" and pr.status or {}
    local meta = type(pr) == "table" and type(pr.metadata) == "table" and pr.metadata or {}
    local since = timestamps.parse(status.startTime) or timestamps.parse(meta.creationTimestamp)
    return seconds, text, since
end

-- True once someone asked Tekton to stop pr (any of v1's spellings).
function tekton.is_cancel_requested(pr)
    local status = type(pr.spec) == "table" and pr.spec.status
    return status == "Cancelled" or status == "CancelledRunFinally" or status == "StoppedRunFinally"
end

-- Merge-patch body that asks Tekton to cancel a PipelineRun (v1 spelling).
function tekton.cancel_patch()
    return { spec = { status = "Cancelled" } }
end

-- "namespace/name" of a PipelineRun, the form status.pipelineRun holds.
function tekton.ref(pr)
    return pr.metadata.namespace .. "/" .. pr.metadata.name
end

return tekton
