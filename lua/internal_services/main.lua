-- Wiring, and the only module that touches the host: builds the
-- reconciler's dependencies from `host`, loads the policies and reloads
-- them when their files change, declares the work queue and, once this
-- process leads (or at once without leader election), the informers that
-- feed it.
--
-- Long-running loops (policy reload, lease renewal) run each step in a new
-- short task: the host charges a task's instruction budget over its whole
-- life, and these loops must never run out of it.
local cjson = require "cjson"
local conditions = require "internal_services.conditions"
local events = require "internal_services.events"
local kube = require "internal_services.kube"
local leader = require "internal_services.leader"
local metrics = require "internal_services.metrics"
local policy = require "internal_services.policy"
local reconciler = require "internal_services.reconciler"
local resources = require "internal_services.resources"

local main = {}

main.QUEUE = "requests"
main.RELOAD_PERIOD = 2
main.RESYNC = 300
main.DEFAULT_TIMEOUT = 3600
main.DEADLINE_GRACE = 60

local function decode(text)
    if type(text) ~= "string" then return nil end
    local ok, value = pcall(cjson.decode, text)
    if ok and type(value) == "table" then return value end
    return nil
end

-- The reconciler's view of the informers: decoded copies of cached JSON.
function main.cache(host)
    return {
        get = function(informer, key) return decode(host.cache_get(informer, key)) end,
        list = function(informer, namespace)
            local out = {}
            for _, text in ipairs(host.cache_list(informer, namespace)) do
                out[#out + 1] = decode(text)
            end
            return out
        end,
    }
end

-- Loads the policy files of dir into chain now, then checks them every
-- RELOAD_PERIOD seconds; a changed set that does not compile is logged by
-- the chain and the last good set stays in force.
function main.policies(host, chain, dir)
    local signature
    local function reload()
        local ok, scripts, new_signature = pcall(host.read_scripts, dir)
        if not ok then
            host.log("error", "reading the policy directory failed", { dir = tostring(dir), error = tostring(scripts) })
            return
        end
        if new_signature == signature then return end
        signature = new_signature
        if chain:load(scripts) then
            host.log("info", "policies in force", { dir = dir, policies = table.concat(chain:names(), ",") })
        end
    end
    reload()
    local function step()
        host.sleep(main.RELOAD_PERIOD)
        local ok, err = pcall(reload)
        if not ok then host.log("error", "policy reload failed", { error = tostring(err) }) end
        host.spawn(step)
    end
    host.spawn(step)
end

-- The informers, each feeding the queue.
function main.watch(host, r, namespace)
    local function enqueue(key) host.enqueue(main.QUEUE, key) end
    local config = resources.internal_services_config
    host.watch({
        name = "config", cluster = "internal",
        group = config.group, version = config.version, resource = config.resource,
        namespace = namespace, field_selector = "metadata.name=" .. resources.config_name,
        -- A config edit applies at once: every request still in flight is
        -- looked at again.
        on_event = function()
            for _, text in ipairs(host.cache_list("requests")) do
                local request = decode(text)
                if request and not conditions.is_finished(request) then enqueue(resources.key(request)) end
            end
        end,
    })
    local pr = resources.pipeline_run
    -- Every PipelineRun of the controller's namespace, not only those with
    -- our request-uid label: the previous controller's runs carry just the
    -- request's name labels, or only its owner annotation, and requests it
    -- left running are followed to their end.
    host.watch({
        name = "pipelineruns", cluster = "internal",
        group = pr.group, version = pr.version, resource = pr.resource,
        namespace = namespace,
        on_event = function(kind, _, obj)
            if kind == "SYNCED" then return end
            local key = r:pipelinerun_event(decode(obj), kind)
            if key then enqueue(key) end
        end,
    })
    local request = resources.internal_request
    host.watch({
        name = "requests", cluster = "remote",
        group = request.group, version = request.version, resource = request.resource,
        resync = main.RESYNC,
        on_event = function(kind, key, obj, old)
            if kind == "ADDED" or kind == "DELETED"
                or (kind == "MODIFIED" and r:request_changed(decode(old), decode(obj))) then
                enqueue(key)
            end
        end,
    })
end

-- Runs the election one step per task until leadership is lost.
function main.elect(host, elector, on_started, on_stopped)
    local function step()
        local wait = elector:tick(on_started, on_stopped)
        if wait then
            host.spawn(function()
                host.sleep(wait)
                step()
            end)
        end
    end
    host.spawn(step)
end

local function positive(value, default)
    return type(value) == "number" and value > 0 and value or default
end

-- Called by the host once the Lua state is ready. Returns the reconciler.
function main.start()
    local host = require "host"
    local cfg = host.config or {}
    local namespace = cfg.namespace or "default"
    local log = host.log
    local client = kube.new(host.kube)
    local m = metrics.new(host.metric, log)
    main.metrics = m

    local chain = policy.new({ log = log, namespace = namespace, metrics = m })
    main.policies(host, chain, cfg.policy_dir)

    local r = reconciler.new({
        kube = client,
        cache = main.cache(host),
        policies = chain,
        events = events.new({ kube = client, now = host.now, log = log, cluster = "remote", instance = cfg.identity,
            spawn = host.spawn }),
        log = log,
        now = host.now,
        namespace = namespace,
        remote = "remote",
        internal = "internal",
        deadline_grace = type(cfg.deadline_grace) == "number" and cfg.deadline_grace >= 0
            and cfg.deadline_grace or main.DEADLINE_GRACE,
        default_timeout = positive(cfg.default_timeout, main.DEFAULT_TIMEOUT),
        resync = main.RESYNC,
        metrics = m,
    })

    local max_active = positive(cfg.max_concurrent_reconciles, 50)
    m:controller(metrics.CONTROLLER, max_active)
    host.queue({
        name = main.QUEUE,
        controller = metrics.CONTROLLER,
        max_active = max_active,
        reconcile = m:instrument(metrics.CONTROLLER, function(key)
            -- Before the config and PipelineRun caches are filled, a
            -- request would look unconfigured (rejected) or orphaned.
            if not (host.synced("config") and host.synced("pipelineruns")) then
                return { requeue_after = 1 }
            end
            return r:reconcile(key)
        end, function() return host.monotonic() / 1000 end),
    })

    local lease = cfg.leader_election_id or leader.DEFAULT_NAME
    local function start_watches()
        host.set_leader(true)
        if cfg.leader_elect then m:leader(lease, true) end
        main.watch(host, r, namespace)
    end
    if cfg.leader_elect then
        local elector = leader.new({
            kube = client, sleep = host.sleep, now = host.now, log = log,
            namespace = namespace,
            name = lease,
            identity = cfg.identity or ("internal-services-" .. string.format("%.0f", host.now() * 1e6)),
            cluster = "internal",
            lease_duration = positive(cfg.lease_duration, nil),
            renew_deadline = positive(cfg.renew_deadline, nil),
            retry_period = positive(cfg.retry_period, nil),
        })
        main.elector = elector
        main.lease = lease
        m:leader(lease, false)
        main.elect(host, elector, start_watches, function(why)
            host.set_leader(false)
            m:leader(lease, false)
            host.shutdown(1, "leadership lost: " .. why)
        end)
    else
        main.elector = nil
        start_watches()
    end
    return r
end

-- Called by the host on SIGTERM, as a task with a few seconds to finish:
-- gives the Lease up so that a standby leads at once.
function main.stop()
    local host = require "host"
    if not main.elector then return end
    local ok, why = main.elector:release()
    if ok then
        host.set_leader(false)
        main.metrics:leader(main.lease, false)
    else
        host.log("warn", "could not release the Lease", { error = tostring(why) })
    end
end

return main
