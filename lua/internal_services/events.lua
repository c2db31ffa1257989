-- Kubernetes Events (core/v1) on the objects the controller acts on, so
-- `kubectl describe internalrequest` tells the story of a request. An event
-- is a courtesy: failing to record one is logged and never fails the work
-- that caused it.
local resources = require "internal_services.resources"

local events = {}

local COMPONENT = "internal-services"
-- metadata.name is at most 253 characters; a suffix is "." plus 16 hex.
local MAX_PREFIX = 253 - 17

local Emitter = {}
Emitter.__index = Emitter

-- deps: kube (client), now (epoch seconds), log, cluster (where the
-- objects live, default "remote"), instance (this process's identity).
function events.new(deps)
    assert(deps.kube and deps.now, "events.new needs kube and now")
    return setmetatable({
        kube = deps.kube,
        now = deps.now,
        log = deps.log or function() end,
        cluster = deps.cluster or "remote",
        instance = deps.instance or COMPONENT,
        last_suffix = 0,
    }, Emitter)
end

local function rfc3339(t)
    return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

-- Nanoseconds of the clock, strictly increasing within this process, so
-- two events in the same instant still get distinct names.
function Emitter:suffix()
    local suffix = math.floor(self.now() * 1e9)
    if suffix <= self.last_suffix then suffix = self.last_suffix + 1 end
    self.last_suffix = suffix
    return string.format("%016x", suffix)
end

-- The Event object for obj; kind "Normal" or "Warning".
function Emitter:build(obj, kind, reason, message)
    local meta = obj.metadata
    local stamp = rfc3339(self.now())
    return {
        apiVersion = "v1",
        kind = "Event",
        metadata = {
            name = meta.name:sub(1, MAX_PREFIX) .. "." .. self:suffix(),
            namespace = meta.namespace,
        },
        involvedObject = {
            apiVersion = obj.apiVersion,
            kind = obj.kind,
            namespace = meta.namespace,
            name = meta.name,
            uid = meta.uid,
            resourceVersion = meta.resourceVersion,
        },
        reason = reason,
        message = message,
        type = kind,
        source = { component = COMPONENT },
        firstTimestamp = stamp,
        lastTimestamp = stamp,
        count = 1,
        reportingComponent = COMPONENT,
        reportingInstance = self.instance,
    }
end

-- Records the event; returns true, or false after logging why not.
function Emitter:emit(obj, kind, reason, message)
    local done, created, err = pcall(function()
        local event = self:build(obj, kind, reason, message)
        return self.kube:create(self.cluster, resources.event, event.metadata.namespace, event)
    end)
    if done and created then return true end
    local why = done and tostring(err) or tostring(created)
    local meta = type(obj) == "table" and obj.metadata or {}
    self.log("warn", "could not record event", {
        reason = reason,
        object = tostring(meta.namespace) .. "/" .. tostring(meta.name),
        error = why,
    })
    return false
end

function Emitter:normal(obj, reason, message)
    return self:emit(obj, "Normal", reason, message)
end

function Emitter:warning(obj, reason, message)
    return self:emit(obj, "Warning", reason, message)
end

return events
