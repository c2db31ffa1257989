-- Kubernetes Events (core/v1) on the objects the controller acts on, so
-- `kubectl describe internalrequest` tells the story of a request. An event
-- is a courtesy: failing to record one is logged and never fails the work
-- that caused it.
--
-- As client-go's event recorder does, a repeat of the same event (same
-- object, type, reason and message) within AGGREGATE_WINDOW seconds bumps
-- the count of the Event already recorded instead of creating another.
-- With deps.spawn (host.spawn) each event is written by a task of its own,
-- so the reconcile that emits it does not wait for the API server.
local resources = require "internal_services.resources"

local events = {}

local COMPONENT = "internal-services"
-- metadata.name is at most 253 characters; a suffix is "." plus 16 hex.
local MAX_PREFIX = 253 - 17

events.AGGREGATE_WINDOW = 600
-- Events remembered for aggregation; past this the memory starts afresh.
events.AGGREGATE_MAX = 4096

local Emitter = {}
Emitter.__index = Emitter

-- deps: kube (client), now (epoch seconds), log, cluster (where the
-- objects live, default "remote"), instance (this process's identity),
-- spawn (optional: runs a function as a task of its own).
function events.new(deps)
    assert(deps.kube and deps.now, "events.new needs kube and now")
    return setmetatable({
        kube = deps.kube,
        now = deps.now,
        log = deps.log or function() end,
        cluster = deps.cluster or "remote",
        instance = deps.instance or COMPONENT,
        spawn = deps.spawn,
        last_suffix = 0,
        recent = {},
        recent_count = 0,
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

local function aggregate_key(obj, kind, reason, message)
    local meta = obj.metadata
    return table.concat({ tostring(meta.uid), tostring(meta.namespace), tostring(meta.name),
        kind, reason, message }, "\0")
end

-- Writes the event: a repeat within the window patches the recorded one's
-- count (a new Event when that one is gone), anything else is created.
function Emitter:record(obj, kind, reason, message)
    local key = aggregate_key(obj, kind, reason, message)
    local now = self.now()
    local seen = self.recent[key]
    if seen and now - seen.at < events.AGGREGATE_WINDOW then
        local count = seen.count + 1
        local patched, err = self.kube:patch(self.cluster, resources.event, obj.metadata.namespace, seen.name,
            { count = count, lastTimestamp = rfc3339(now) }, "merge")
        if patched then
            seen.count, seen.at = count, now
            return patched
        end
        if err.reason ~= "NotFound" then return nil, err end
    end
    local event = self:build(obj, kind, reason, message)
    local created, err = self.kube:create(self.cluster, resources.event, event.metadata.namespace, event)
    if not created then return nil, err end
    if not seen then
        if self.recent_count >= events.AGGREGATE_MAX then
            self.recent, self.recent_count = {}, 0
        end
        self.recent_count = self.recent_count + 1
    end
    self.recent[key] = { name = event.metadata.name, count = 1, at = now }
    return created
end

-- Records the event (in a task of its own with deps.spawn); returns true,
-- or false after logging why not. Never raises.
function Emitter:emit(obj, kind, reason, message)
    local function write()
        local done, created, err = pcall(self.record, self, obj, kind, reason, message)
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
    if self.spawn then
        local ok, err = pcall(self.spawn, write)
        if ok then return true end
        self.log("warn", "could not start a task to record an event", { reason = reason, error = tostring(err) })
        return false
    end
    return write()
end

function Emitter:normal(obj, reason, message)
    return self:emit(obj, "Normal", reason, message)
end

function Emitter:warning(obj, reason, message)
    return self:emit(obj, "Warning", reason, message)
end

return events
