-- Leader election on a coordination.k8s.io/v1 Lease, written and judged
-- as client-go's leaderelection package does (the existing Go controller
-- uses it through controller-runtime, on the Lease b548bb9d.redhat.com),
-- so replicas of the controller, or a rolling update from the Go one,
-- never run two reconcilers at once.
--
-- The holder renews the Lease every retry_period, as client-go does. Every write carries the
-- resourceVersion it read, so two candidates racing for a free Lease cannot
-- both win: the loser gets Conflict. Expiry is judged on this process's
-- clock from when it last saw the Lease change (as client-go does), not on
-- the renewTime another machine wrote, so clock skew between replicas does
-- not matter. A leader that cannot renew within renew_deadline, shorter
-- than the lease duration, gives up before anyone else may take over.
local resources = require "internal_services.resources"

local leader = {}

-- controller-runtime's defaults, which the existing controller runs with.
leader.DEFAULT_NAME = "b548bb9d.redhat.com"
leader.defaults = {
    lease_duration = 15,
    renew_deadline = 10,
    retry_period = 2,
}

-- Kubernetes MicroTime: "2006-01-02T15:04:05.000000Z".
function leader.microtime(t)
    local whole = math.floor(t)
    local micros = math.floor((t - whole) * 1e6 + 0.5)
    if micros >= 1000000 then
        whole = whole + 1
        micros = micros - 1000000
    end
    return os.date("!%Y-%m-%dT%H:%M:%S", whole) .. string.format(".%06dZ", micros)
end

local Elector = {}
Elector.__index = Elector

-- deps: kube (client), sleep(seconds), now() (epoch seconds), log,
-- namespace, name (of the Lease), identity (this process), cluster
-- (default "internal"), and optionally lease_duration, renew_deadline,
-- retry_period and renew_period (default retry_period) in seconds.
function leader.new(deps)
    for _, field in ipairs { "kube", "sleep", "now", "namespace", "name", "identity" } do
        assert(deps[field] ~= nil, "leader.new: deps." .. field .. " is required")
    end
    local e = setmetatable({
        kube = deps.kube,
        sleep = deps.sleep,
        now = deps.now,
        log = deps.log or function() end,
        namespace = deps.namespace,
        name = deps.name,
        identity = deps.identity,
        cluster = deps.cluster or "internal",
        observed = nil,
        observed_at = 0,
        leading = false,
        last_renew = 0,
    }, Elector)
    for key, value in pairs(leader.defaults) do e[key] = deps[key] or value end
    e.renew_period = deps.renew_period or e.retry_period
    assert(e.renew_deadline < e.lease_duration, "leader: renew_deadline must be shorter than lease_duration")
    return e
end

-- Remembers when the Lease's record last changed, on our clock (client-go
-- compares the whole record too).
function Elector:observe(lease, now)
    local spec = lease.spec or {}
    local record = table.concat({
        tostring(spec.holderIdentity), tostring(spec.renewTime),
        tostring(spec.acquireTime), tostring(spec.leaseTransitions),
        tostring(spec.leaseDurationSeconds),
    }, "|")
    if record ~= self.observed then
        self.observed = record
        self.observed_at = now
    end
end

function Elector:lease_spec(now, transitions, acquired)
    return {
        holderIdentity = self.identity,
        leaseDurationSeconds = self.lease_duration,
        acquireTime = acquired or leader.microtime(now),
        renewTime = leader.microtime(now),
        leaseTransitions = transitions,
    }
end

-- One attempt to take or keep the Lease. Returns true when we hold it;
-- false and why otherwise, with a third value true when another identity
-- holds a live Lease (for a leader: lost at once).
function Elector:try_acquire_or_renew()
    local now = self.now()
    local res = resources.lease
    local lease, err = self.kube:get(self.cluster, res, self.namespace, self.name)
    if not lease then
        if err.reason ~= "NotFound" then return false, "reading the Lease: " .. tostring(err) end
        local created, cerr = self.kube:create(self.cluster, res, self.namespace, {
            apiVersion = resources.api_version(res),
            kind = res.kind,
            metadata = { name = self.name, namespace = self.namespace },
            spec = self:lease_spec(now, 0),
        })
        if not created then return false, "creating the Lease: " .. tostring(cerr) end
        self:observe(created, now)
        return true
    end
    self:observe(lease, now)
    local spec = lease.spec or {}
    local holder = spec.holderIdentity
    local held_by_other = type(holder) == "string" and holder ~= "" and holder ~= self.identity
    -- A record without a duration is expired, as client-go reads it.
    local duration = tonumber(spec.leaseDurationSeconds) or 0
    if held_by_other and self.observed_at + duration > now then
        return false, "the Lease is held by " .. holder, true
    end
    local transitions = math.tointeger(spec.leaseTransitions) or 0
    if holder == self.identity then
        lease.spec = self:lease_spec(now, transitions, spec.acquireTime)
    else
        lease.spec = self:lease_spec(now, transitions + 1)
    end
    -- Left out, managedFields stay as they are; echoed back they could
    -- lose their empty lists in re-encoding.
    lease.metadata.managedFields = nil
    local updated, uerr = self.kube:update(self.cluster, res, self.namespace, lease)
    if not updated then return false, "updating the Lease: " .. tostring(uerr) end
    self:observe(updated, now)
    return true
end

-- One step of the election; returns the seconds to wait before the next
-- step, or nil once leadership is lost (after on_stopped(why)). A candidate
-- retries every retry_period and calls on_started() when it wins; a leader
-- renews every renew_period, retrying failures until renew_deadline.
-- Stepping lets the caller run each step in a short-lived task, so no
-- task lives long enough to exhaust its instruction budget.
function Elector:tick(on_started, on_stopped)
    -- After release() the election is over for this process.
    if self.released then return nil end
    local fields = { lease = self.namespace .. "/" .. self.name, identity = self.identity }
    -- An attempt that raises is a failed attempt: the renew deadline, not
    -- an error, decides when leadership is lost.
    local done, ok, why, taken = pcall(self.try_acquire_or_renew, self)
    if not done then ok, why, taken = false, tostring(ok), false end
    local now = self.now()
    if not self.leading then
        if not ok then
            self.log("debug", "not the leader yet: " .. why, fields)
            return self.retry_period
        end
        self.leading = true
        self.last_renew = now
        self.log("info", "became the leader", fields)
        on_started()
        return self.renew_period
    end
    if ok then
        self.last_renew = now
        return self.renew_period
    end
    local deadline = self.last_renew + self.renew_deadline
    if taken or now >= deadline then
        local reason = taken and why or string.format(
            "could not renew the Lease for %gs: %s", now - self.last_renew, why)
        self.leading = false
        self.log("error", "leadership lost: " .. reason, fields)
        on_stopped(reason)
        return nil
    end
    self.log("warn", "renewing the Lease failed: " .. why, fields)
    return math.min(self.retry_period, deadline - now)
end

-- Gives the Lease up on a clean shutdown, as client-go does with
-- ReleaseOnCancel: an empty holder and a one-second duration let a standby
-- take over at its next retry instead of waiting for the Lease to expire.
-- Returns true when released (or not held), false and why otherwise.
function Elector:release()
    self.released = true
    if not self.leading then return true end
    self.leading = false
    local res = resources.lease
    local lease, err = self.kube:get(self.cluster, res, self.namespace, self.name)
    if not lease then return false, "reading the Lease: " .. tostring(err) end
    local spec = lease.spec or {}
    if spec.holderIdentity ~= self.identity then return true end
    local now = leader.microtime(self.now())
    lease.spec = {
        holderIdentity = "",
        leaseDurationSeconds = 1,
        acquireTime = now,
        renewTime = now,
        leaseTransitions = spec.leaseTransitions,
    }
    lease.metadata.managedFields = nil
    local updated, uerr = self.kube:update(self.cluster, res, self.namespace, lease)
    if not updated then return false, "releasing the Lease: " .. tostring(uerr) end
    self.log("info", "released the Lease", { lease = self.namespace .. "/" .. self.name, identity = self.identity })
    return true
end

-- Blocks (in a coroutine) until this process leads, then calls
-- on_started(); keeps renewing and returns after calling on_stopped(why)
-- once leadership is lost.
function Elector:run(on_started, on_stopped)
    while true do
        local wait = self:tick(on_started, on_stopped)
        if not wait then return end
        self.sleep(wait)
    end
end

return leader
