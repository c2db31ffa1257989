local kube = require "internal_services.kube"
local leader = require "internal_services.leader"
local fake_api = require "spec.support.fake_api"

local LEASE = { group = "coordination.k8s.io", version = "v1", resource = "leases" }
local T0 = 1795428000

describe("leader.microtime", function()
    it("formats MicroTime with six fractional digits in UTC", function()
        assert.equal("2026-11-23T10:00:00.000000Z", leader.microtime(T0))
        assert.equal("2026-11-23T10:00:01.250000Z", leader.microtime(T0 + 1.25))
        assert.equal("2026-11-23T10:00:01.000000Z", leader.microtime(T0 + 0.9999999))
    end)
end)

describe("leader election", function()
    local api, clock

    local function elector(identity, overrides)
        local deps = {
            kube = kube.new(api.raw),
            sleep = function(s) coroutine.yield(s) end,
            now = function() return clock end,
            namespace = "internal-services",
            name = "internal-services-leader",
            identity = identity,
        }
        for k, v in pairs(overrides or {}) do deps[k] = v end
        return leader.new(deps)
    end

    local function lease()
        return api:object("internal", LEASE, "internal-services", "internal-services-leader")
    end

    -- Runs e:run() as a coroutine whose sleeps advance the fake clock; step()
    -- resumes it through one sleep and returns what happened so far.
    local function runner(e)
        local state = { started = 0, stopped = nil, done = false }
        local co = coroutine.create(function()
            e:run(function()
                      state.started = state.started + 1
                      state.started_at = clock
                  end,
                  function(why) state.stopped = why end)
            state.done = true
        end)
        local function step()
            local ok, slept = coroutine.resume(co)
            assert(ok, slept)
            if slept then clock = clock + slept end
            return state
        end
        return step, state
    end

    before_each(function()
        clock = T0
        api = fake_api.new({ now = function() return clock end })
    end)

    it("creates the Lease when there is none and leads", function()
        local e = elector("pod-a")
        assert.is_true(e:try_acquire_or_renew())
        local spec = lease().spec
        assert.equal("pod-a", spec.holderIdentity)
        assert.equal(15, spec.leaseDurationSeconds)
        assert.equal("2026-11-23T10:00:00.000000Z", spec.acquireTime)
        assert.equal(spec.acquireTime, spec.renewTime)
        assert.equal(0, spec.leaseTransitions)
    end)

    it("renews its own Lease, keeping acquireTime and transitions", function()
        local e = elector("pod-a")
        assert.is_true(e:try_acquire_or_renew())
        clock = clock + 5
        assert.is_true(e:try_acquire_or_renew())
        local spec = lease().spec
        assert.equal("2026-11-23T10:00:00.000000Z", spec.acquireTime)
        assert.equal("2026-11-23T10:00:05.000000Z", spec.renewTime)
        assert.equal(0, spec.leaseTransitions)
    end)

    it("does not take a live Lease held by another identity", function()
        assert.is_true(elector("pod-a"):try_acquire_or_renew())
        local b = elector("pod-b")
        local ok, why, taken = b:try_acquire_or_renew()
        assert.is_false(ok)
        assert.equal("the Lease is held by pod-a", why)
        assert.is_true(taken)
        clock = clock + 14
        assert.is_false(b:try_acquire_or_renew())
        assert.equal("pod-a", lease().spec.holderIdentity)
    end)

    it("takes over an expired Lease, judged from when it last changed", function()
        assert.is_true(elector("pod-a"):try_acquire_or_renew())
        local b = elector("pod-b")
        clock = clock + 100
        -- First sight of the record starts b's own expiry clock, whatever
        -- renewTime says (the writer's clock may be skewed).
        assert.is_false(b:try_acquire_or_renew())
        clock = clock + 15.5
        assert.is_true(b:try_acquire_or_renew())
        local spec = lease().spec
        assert.equal("pod-b", spec.holderIdentity)
        assert.equal(1, spec.leaseTransitions)
        assert.equal(spec.renewTime, spec.acquireTime)
    end)

    it("loses a race for the Lease on resourceVersion conflict", function()
        assert.is_true(elector("pod-a"):try_acquire_or_renew())
        local b = elector("pod-b")
        b:try_acquire_or_renew()
        clock = clock + 16
        -- Another candidate writes between b's read and b's update.
        api:inject({ verb = "get", resource = "leases", after = function()
            local current = lease()
            current.spec.holderIdentity = "pod-c"
            api:put("internal", LEASE, current)
        end })
        local ok, why = b:try_acquire_or_renew()
        assert.is_false(ok)
        assert.matches("Conflict", why)
        assert.equal("pod-c", lease().spec.holderIdentity)
    end)

    it("waits, retrying every 2 s, until the holder lets the Lease expire", function()
        assert.is_true(elector("pod-a"):try_acquire_or_renew())
        local step, state = runner(elector("pod-b"))
        local polls = 0
        while state.started == 0 do
            step()
            polls = polls + 1
            assert.is_true(polls < 20, "never became leader")
        end
        assert.equal("pod-b", lease().spec.holderIdentity)
        -- 15 s of lease duration observed from the first poll, in 2 s steps.
        assert.equal(T0 + 16, state.started_at)
    end)

    it("renews every retry period (2 s) while leading, as client-go does", function()
        local step, state = runner(elector("pod-a"))
        step()
        assert.equal(1, state.started)
        step()
        assert.equal(T0 + 4, clock)
        assert.equal("2026-11-23T10:00:02.000000Z", lease().spec.renewTime)
        assert.is_nil(state.stopped)
    end)

    it("names the existing controller's Lease by default", function()
        assert.equal("b548bb9d.redhat.com", leader.DEFAULT_NAME)
    end)

    it("takes a Lease whose record has no duration at once, as client-go does", function()
        api:put("internal", LEASE, {
            apiVersion = "coordination.k8s.io/v1", kind = "Lease",
            metadata = { namespace = "internal-services", name = "internal-services-leader" },
            spec = { holderIdentity = "go-pod", leaseTransitions = 3 },
        })
        assert.is_true(elector("pod-b"):try_acquire_or_renew())
        assert.equal("pod-b", lease().spec.holderIdentity)
        assert.equal(4, lease().spec.leaseTransitions)
    end)

    it("honours the holder's leaseDurationSeconds, not its own", function()
        assert.is_true(elector("go-pod", { lease_duration = 90, renew_deadline = 60 }):try_acquire_or_renew())
        assert.equal(90, lease().spec.leaseDurationSeconds)
        local b = elector("pod-b")
        assert.is_false(b:try_acquire_or_renew())
        clock = clock + 60
        assert.is_false(b:try_acquire_or_renew())
        clock = clock + 31
        assert.is_true(b:try_acquire_or_renew())
        assert.equal(15, lease().spec.leaseDurationSeconds)
    end)

    it("restarts its expiry clock whenever the holder renews", function()
        local a, b = elector("pod-a"), elector("pod-b")
        assert.is_true(a:try_acquire_or_renew())
        assert.is_false(b:try_acquire_or_renew())
        for _ = 1, 5 do
            clock = clock + 10
            assert.is_true(a:try_acquire_or_renew())
            assert.is_false(b:try_acquire_or_renew())
        end
        assert.equal("pod-a", lease().spec.holderIdentity)
    end)

    it("gives up leadership when renewals fail past the renew deadline", function()
        local step, state = runner(elector("pod-a"))
        step()
        assert.equal(1, state.started)
        api:inject({ verb = "get", resource = "leases", times = math.huge,
                     respond = { code = 503, reason = "ServiceUnavailable" } })
        local rounds = 0
        while not state.done do
            step()
            rounds = rounds + 1
            assert.is_true(rounds < 20, "never gave up")
        end
        assert.matches("could not renew the Lease for 10s", state.stopped)
        -- Lost before the 15 s lease could expire for anyone else.
        assert.is_true(clock - T0 <= 10)
    end)

    it("treats an attempt that raises as a failed renewal", function()
        local step, state = runner(elector("pod-a"))
        step()
        api:inject({ verb = "get", resource = "leases", before = function() error("boom", 0) end })
        step()
        assert.is_nil(state.stopped)
        step()
        assert.is_nil(state.stopped)
        assert.equal(1, state.started)
        assert.equal("pod-a", lease().spec.holderIdentity)
    end)

    it("steps through the election one wait at a time", function()
        local e = elector("pod-a")
        local started, stopped = 0, nil
        local function on_started() started = started + 1 end
        local function on_stopped(why) stopped = why end
        assert.equal(2, e:tick(on_started, on_stopped))
        assert.equal(1, started)
        clock = clock + 2
        api:inject({ verb = "update", resource = "leases", respond = { code = 409, reason = "Conflict" } })
        assert.equal(2, e:tick(on_started, on_stopped))
        clock = clock + 2
        assert.equal(2, e:tick(on_started, on_stopped))
        assert.equal(1, started)
        assert.is_nil(stopped)
    end)

    it("gives up at once when another identity holds the Lease", function()
        local step, state = runner(elector("pod-a"))
        step()
        local current = lease()
        current.spec.holderIdentity = "pod-z"
        api:put("internal", LEASE, current)
        step()
        assert.is_true(state.done)
        assert.equal("the Lease is held by pod-z", state.stopped)
    end)

    it("releases its Lease on shutdown so a standby takes over at once", function()
        local a, b = elector("pod-a"), elector("pod-b")
        local step_a = runner(a)
        assert.equal(1, step_a().started)
        assert.is_true(a.leading)
        assert.is_true(a:release())
        assert.is_false(a.leading)
        local spec = lease().spec
        assert.equal("", spec.holderIdentity)
        assert.equal(1, spec.leaseDurationSeconds)
        -- No wait for the 15 s lease: the next attempt wins.
        clock = clock + 1
        assert.is_true(b:try_acquire_or_renew())
        assert.equal("pod-b", lease().spec.holderIdentity)
        assert.equal(1, lease().spec.leaseTransitions)
    end)

    it("does not release a Lease another identity holds, nor one it never led", function()
        local a = elector("pod-a")
        assert.is_true(a:release())
        assert.is_nil(lease())
        assert.is_true(a:try_acquire_or_renew())
        a.leading = true
        -- Taken over behind its back: the release must not clear pod-b.
        local l = lease()
        l.spec.holderIdentity = "pod-b"
        api:put("internal", LEASE, l)
        assert.is_true(a:release())
        assert.equal("pod-b", lease().spec.holderIdentity)
    end)

    it("refuses a renew deadline that is not shorter than the lease", function()
        assert.has_error(function() elector("pod-a", { renew_deadline = 15 }) end,
            "leader: renew_deadline must be shorter than lease_duration")
    end)
end)
