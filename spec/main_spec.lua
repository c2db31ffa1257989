local cjson = require "cjson"
local fixtures = require "spec.support.fixtures"
local fake_api = require "spec.support.fake_api"
local fake_metrics = require "spec.support.fake_metrics"
local world = require "spec.support.world"
local kube = require "internal_services.kube"
local resources = require "internal_services.resources"

local NS = world.NAMESPACE

-- A host module with the fake API server behind host.kube and the caches,
-- and a scheduler for spawned tasks driven by a fake clock.
local function fake_host(config)
    local h = {
        clock = world.T0,
        logs = {}, watches = {}, queues = {}, enqueued = {}, tasks = {},
        synced_informers = {}, exit = nil, leader = nil,
        scripts = world.shipped_policies(), signature = "one",
    }
    h.api = fake_api.new({ now = function() return h.clock end })
    local informers = {
        requests = { "remote", resources.internal_request },
        config = { "internal", resources.internal_services_config },
        pipelineruns = { "internal", resources.pipeline_run },
    }
    local cache = h.api:cache(informers)
    h.config = config
    h.kube = h.api.raw
    h.log = function(level, msg, fields) h.logs[#h.logs + 1] = { level = level, msg = msg, fields = fields } end
    h.now = function() return h.clock end
    h.monotonic = function() return math.floor(h.clock * 1000) end
    h.metrics = fake_metrics.new()
    h.metric = h.metrics.define
    h.cache_get = function(informer, key)
        local obj = cache.get(informer, key)
        return obj and kube.encode(obj) or nil
    end
    h.cache_list = function(informer)
        local out = {}
        for i, obj in ipairs(cache.list(informer)) do out[i] = kube.encode(obj) end
        return out
    end
    h.synced = function(name) return h.synced_informers[name] == true end
    h.queue = function(spec) h.queues[spec.name] = spec end
    h.watch = function(spec) h.watches[spec.name] = spec end
    h.enqueue = function(queue, key) h.enqueued[#h.enqueued + 1] = queue .. ":" .. key end
    h.spawn = function(fn, ...)
        local args = table.pack(...)
        h.tasks[#h.tasks + 1] = { co = coroutine.create(function() fn(table.unpack(args, 1, args.n)) end), wake = h.clock }
    end
    h.sleep = function(s) coroutine.yield(s) end
    h.set_leader = function(b) h.leader = b end
    h.shutdown = function(code, why) h.exit = { code = code, why = why } end
    h.read_scripts = function() return h.scripts, h.signature end
    -- Runs every task due by now, then moves the clock by dt and repeats.
    function h.advance(dt)
        local target = h.clock + (dt or 0)
        while true do
            local ran = false
            for i = #h.tasks, 1, -1 do
                local t = h.tasks[i]
                if t.wake <= h.clock then
                    table.remove(h.tasks, i)
                    local ok, slept = coroutine.resume(t.co)
                    assert(ok, slept)
                    if coroutine.status(t.co) ~= "dead" then
                        t.wake = h.clock + slept
                        h.tasks[#h.tasks + 1] = t
                    end
                    ran = true
                end
            end
            if not ran then
                local next_wake
                for _, t in ipairs(h.tasks) do
                    if not next_wake or t.wake < next_wake then next_wake = t.wake end
                end
                if not next_wake or next_wake > target then break end
                h.clock = next_wake
            end
        end
        h.clock = target
    end
    return h
end

local function config(overrides)
    local c = { namespace = NS, policy_dir = "/policies", identity = "pod-1", leader_elect = false,
                leader_election_id = "internal-services-leader", deadline_grace = 30, default_timeout = 100 }
    for k, v in pairs(overrides or {}) do c[k] = v end
    return c
end

describe("main", function()
    local h, main

    local function start(overrides)
        h = fake_host(config(overrides))
        package.loaded.host = h
        package.loaded["internal_services.main"] = nil
        main = require "internal_services.main"
        return main.start()
    end

    after_each(function()
        package.loaded.host = nil
    end)

    it("caps concurrent reconciles as configured, 50 by default", function()
        start()
        assert.equal(50, h.queues.requests.max_active)
        start({ max_concurrent_reconciles = 4 })
        assert.equal(4, h.queues.requests.max_active)
    end)

    it("reports the queue as controller-runtime's internalrequest controller", function()
        start({ max_concurrent_reconciles = 4 })
        local q = h.queues.requests
        assert.equal("internalrequest", q.controller)
        local c = { controller = "internalrequest" }
        assert.equal(4, h.metrics:value("controller_runtime_max_concurrent_reconciles", c))
        assert.equal(0, h.metrics:value("controller_runtime_reconcile_total", { controller = "internalrequest", result = "success" }))
        -- Before the caches are synced a reconcile asks to come back later.
        assert.same({ requeue_after = 1 }, q.reconcile("tenant-a/x"))
        assert.equal(1, h.metrics:value("controller_runtime_reconcile_total",
            { controller = "internalrequest", result = "requeue_after" }))
        assert.equal(1, (h.metrics:value("controller_runtime_reconcile_time_seconds", c)))
        assert.equal(0, h.metrics:value("controller_runtime_active_workers", c))
        -- Without leader election there is no Lease to report.
        assert.is_nil(h.metrics:value("leader_election_master_status", { name = "internal-services-leader" }))
    end)

    it("declares the queue and the three informers", function()
        start()
        assert.is_function(h.queues.requests.reconcile)
        assert.is_true(h.leader)
        local c = h.watches.config
        assert.same({ "internal", NS, "internalservicesconfigs", "metadata.name=config" },
            { c.cluster, c.namespace, c.resource, c.field_selector })
        local p = h.watches.pipelineruns
        -- No label selector: the previous controller's runs have no uid label.
        assert.same({ "internal", NS, "tekton.dev", "v1", "pipelineruns" },
            { p.cluster, p.namespace, p.group, p.version, p.resource })
        assert.is_nil(p.label_selector)
        local r = h.watches.requests
        assert.same({ "remote", "appstudio.redhat.com", "internalrequests", 300 },
            { r.cluster, r.group, r.resource, r.resync })
        assert.is_nil(r.namespace)
    end)

    it("reconciles once the caches are synced, with the host's timeouts", function()
        start()
        h.api:put("internal", resources.internal_services_config, fixtures.load("configs/default.json"))
        local key = resources.key(h.api:put("remote", resources.internal_request, fixtures.load("requests/basic.json")))
        local reconcile = h.queues.requests.reconcile
        assert.same({ requeue_after = 1 }, reconcile(key))
        assert.equal(0, #h.api:objects("internal", resources.pipeline_run))
        h.synced_informers.config, h.synced_informers.pipelineruns = true, true
        -- default_timeout 100 plus deadline_grace 30 from host.config.
        assert.same({ requeue_after = 130 }, reconcile(key))
        assert.equal(1, #h.api:objects("internal", resources.pipeline_run))
    end)

    it("enqueues requests on create, delete, spec change and resync, not on status updates", function()
        start()
        local on_event = h.watches.requests.on_event
        local v1 = { metadata = { namespace = "a", name = "r", resourceVersion = "1", generation = 1 } }
        local status_only = { metadata = { namespace = "a", name = "r", resourceVersion = "2", generation = 1 },
                              status = { startTime = "x" } }
        local spec_change = { metadata = { namespace = "a", name = "r", resourceVersion = "3", generation = 2 } }
        on_event("ADDED", "a/r", cjson.encode(v1))
        on_event("MODIFIED", "a/r", cjson.encode(status_only), cjson.encode(v1))
        assert.same({ "requests:a/r" }, h.enqueued)
        on_event("MODIFIED", "a/r", cjson.encode(spec_change), cjson.encode(status_only))
        on_event("MODIFIED", "a/r", cjson.encode(spec_change), cjson.encode(spec_change))
        on_event("DELETED", "a/r", cjson.encode(spec_change))
        assert.same({ "requests:a/r", "requests:a/r", "requests:a/r", "requests:a/r" }, h.enqueued)
    end)

    it("maps PipelineRun events to their requests", function()
        start()
        local pr = fixtures.load("pipelineruns/succeeded.json")
        h.watches.pipelineruns.on_event("MODIFIED", "x/y", cjson.encode(pr), cjson.encode(pr))
        h.watches.pipelineruns.on_event("SYNCED")
        pr.metadata.labels = nil
        pr.metadata.annotations[resources.annotations.request] = nil
        h.watches.pipelineruns.on_event("ADDED", "x/y", cjson.encode(pr))
        assert.same({ "requests:tenant-a/basic" }, h.enqueued)
    end)

    it("maps the previous controller's PipelineRuns by labels, else by owner annotation", function()
        start()
        local pr = fixtures.load("pipelineruns/legacy-running.json")
        h.watches.pipelineruns.on_event("ADDED", "x/y", cjson.encode(pr))
        pr.metadata.labels = nil
        h.watches.pipelineruns.on_event("MODIFIED", "x/y", cjson.encode(pr), cjson.encode(pr))
        pr.metadata.annotations["operator-sdk/primary-resource-type"] = "Release.appstudio.redhat.com"
        h.watches.pipelineruns.on_event("MODIFIED", "x/y", cjson.encode(pr), cjson.encode(pr))
        assert.same({ "requests:tenant-a/legacy-running", "requests:tenant-a/legacy-running" }, h.enqueued)
    end)

    it("looks at every unfinished request again when the config changes", function()
        start()
        h.api:put("remote", resources.internal_request, fixtures.load("requests/basic.json"))
        h.api:put("remote", resources.internal_request, fixtures.load("requests/running.json"))
        h.api:put("remote", resources.internal_request, fixtures.load("requests/succeeded.json"))
        h.watches.config.on_event("MODIFIED", NS .. "/config", "{}", "{}")
        table.sort(h.enqueued)
        assert.same({ "requests:tenant-a/basic", "requests:tenant-a/running" }, h.enqueued)
    end)

    it("reloads changed policies and keeps the last good set when a file is broken", function()
        local r = start()
        assert.same({ "allowlist.lua", "git_url.lua" }, r.policies:names())
        h.scripts = { { name = "allowlist.lua", source = "return function( -- broken" } }
        h.signature = "two"
        h.advance(2)
        assert.same({ "allowlist.lua", "git_url.lua" }, r.policies:names())
        h.scripts = { { name = "only.lua", source = "return function() return true end" } }
        h.signature = "three"
        h.advance(2)
        assert.same({ "only.lua" }, r.policies:names())
        -- Unchanged signature: no reload, even after many periods.
        h.scripts = {}
        h.advance(20)
        assert.same({ "only.lua" }, r.policies:names())
    end)

    it("starts the informers only after winning the election, and exits when leadership is lost", function()
        start({ leader_elect = true })
        assert.is_nil(h.watches.requests)
        local lease = {
            apiVersion = "coordination.k8s.io/v1", kind = "Lease",
            metadata = { namespace = NS, name = "internal-services-leader" },
            spec = { holderIdentity = "pod-0", leaseDurationSeconds = 15 },
        }
        h.api:put("internal", resources.lease, lease)
        local status = { name = "internal-services-leader" }
        h.advance(10)
        assert.is_nil(h.watches.requests)
        assert.is_nil(h.leader)
        assert.equal(0, h.metrics:value("leader_election_master_status", status))
        h.advance(10)
        assert.is_table(h.watches.requests)
        assert.is_true(h.leader)
        assert.equal(1, h.metrics:value("leader_election_master_status", status))
        assert.equal("pod-1", h.api:object("internal", resources.lease, NS, "internal-services-leader").spec.holderIdentity)
        h.api:inject({ verb = "get", resource = "leases", times = math.huge,
                       respond = { code = 503, reason = "ServiceUnavailable" } })
        h.advance(30)
        assert.is_false(h.leader)
        assert.equal(0, h.metrics:value("leader_election_master_status", status))
        assert.equal(1, h.exit.code)
        assert.matches("^leadership lost: could not renew the Lease", h.exit.why)
    end)

    it("gives the Lease up when the host stops it, and does not take it back", function()
        start({ leader_elect = true })
        h.advance(1)
        assert.is_true(h.leader)
        main.stop()
        assert.is_false(h.leader)
        assert.equal(0, h.metrics:value("leader_election_master_status", { name = "internal-services-leader" }))
        local lease = h.api:object("internal", resources.lease, NS, "internal-services-leader")
        assert.equal("", lease.spec.holderIdentity)
        -- The renewal still scheduled finds the election over.
        h.advance(30)
        assert.equal("", h.api:object("internal", resources.lease, NS, "internal-services-leader").spec.holderIdentity)
        assert.is_nil(h.exit)
    end)

    it("has nothing to give up without leader election", function()
        start({ leader_elect = false })
        main.stop()
        assert.is_true(h.leader)
    end)
end)
