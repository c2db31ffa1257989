-- The controller's own metrics, defined through host.metric (or anything
-- with its shape, in specs): controller-runtime's reconcile series, the
-- existing Go controller's internal_request_attempt_* family, leader
-- election, and policy outcomes by policy. Names, help texts, labels and
-- buckets are those of controller-runtime and konflux-ci/internal-services,
-- so that existing dashboards and alerts read them unchanged.
--
-- A metric never fails the work it measures: a full registry or a memory
-- error is logged once per family and the sample dropped.
local quote = require "internal_services.quote"

local metrics = {}

metrics.CONTROLLER = "internalrequest"

-- controller-runtime's controller_runtime_reconcile_time_seconds buckets.
metrics.RECONCILE_BUCKETS = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
}
-- The existing controller's internal_request_attempt_duration_seconds buckets.
metrics.ATTEMPT_BUCKETS = { 10, 20, 40, 60, 150, 300, 450, 900, 1800, 3600 }

metrics.RESULTS = { "success", "error", "requeue", "requeue_after" }

local ATTEMPT_LABELS = { "request", "namespace", "reason", "succeeded" }

local M = {}
M.__index = M

local function nolog() end

-- define: host.metric; log: host.log.
function metrics.new(define, log)
    local self = setmetatable({ log = log or nolog, warned = {}, running = {} }, M)
    local family = define
    self.reconcile_total = family {
        type = "counter", name = "controller_runtime_reconcile_total",
        help = "Total number of reconciliations per controller", labels = { "controller", "result" },
    }
    self.reconcile_errors = family {
        type = "counter", name = "controller_runtime_reconcile_errors_total",
        help = "Total number of reconciliation errors per controller", labels = { "controller" },
    }
    self.reconcile_time = family {
        type = "histogram", name = "controller_runtime_reconcile_time_seconds",
        help = "Length of time per reconciliation per controller", labels = { "controller" },
        buckets = metrics.RECONCILE_BUCKETS,
    }
    self.max_workers = family {
        type = "gauge", name = "controller_runtime_max_concurrent_reconciles",
        help = "Maximum number of concurrent reconciles per controller", labels = { "controller" },
    }
    self.active_workers = family {
        type = "gauge", name = "controller_runtime_active_workers",
        help = "Number of currently used workers per controller", labels = { "controller" },
    }
    self.leader_status = family {
        type = "gauge", name = "leader_election_master_status",
        help = "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, "
            .. "1 indicates master. 'name' is the string used to identify the lease. Please make sure "
            .. "to group by name.",
        labels = { "name" },
    }
    self.attempt_concurrent = family {
        type = "gauge", name = "internal_request_attempt_concurrent_requests",
        help = "Total number of concurrent InternalRequest attempts",
    }
    self.attempt_duration = family {
        type = "histogram", name = "internal_request_attempt_duration_seconds",
        help = "Time from the moment the InternalRequest starts being processed until it completes",
        labels = ATTEMPT_LABELS, buckets = metrics.ATTEMPT_BUCKETS,
    }
    self.attempt_total = family {
        type = "counter", name = "internal_request_attempt_total",
        help = "Total number of InternalRequests processed by the operator", labels = ATTEMPT_LABELS,
    }
    self.policy_denials = family {
        type = "counter", name = "internal_services_policy_denials_total",
        help = "Requests a policy denied, by policy (empty when no policy is loaded).", labels = { "policy" },
    }
    self.policy_errors = family {
        type = "counter", name = "internal_services_policy_errors_total",
        help = "Policy calls that failed (an error, a limit, or no true/false verdict), by policy.",
        labels = { "policy" },
    }
    self.policy_load_errors = family {
        type = "counter", name = "internal_services_policy_load_errors_total",
        help = "Policy files that did not compile on a load, by policy.", labels = { "policy" },
    }
    -- The gauge exists from the start, as the Go controller's does.
    self:apply(self.attempt_concurrent, "add", nil, 0)
    return self
end

-- Runs op on family; a refusal (full registry, memory) is logged once.
function M:apply(family, op, labels, value)
    local ok, err = family[op](family, labels, value)
    if not ok and not self.warned[family] then
        self.warned[family] = true
        self.log("warn", "a metric sample was dropped", { error = tostring(err) })
    end
end

-- A controller's series at zero, as controller-runtime initialises them.
function M:controller(name, max_concurrent)
    local labels = { controller = name }
    for _, result in ipairs(metrics.RESULTS) do
        self:apply(self.reconcile_total, "add", { controller = name, result = result }, 0)
    end
    self:apply(self.reconcile_errors, "add", labels, 0)
    self:apply(self.active_workers, "set", labels, 0)
    self:apply(self.max_workers, "set", labels, max_concurrent)
end

-- The result label of a reconcile's outcome (as the host reads it).
function metrics.result_of(ok, value)
    if not ok or value == false then return "error" end
    if type(value) == "table" and type(value.requeue_after) == "number" then
        return value.requeue_after > 0 and "requeue_after" or "requeue"
    end
    return "success"
end

-- Wraps a reconcile function: counts workers, times it and counts its
-- result; errors pass through unchanged.
function M:instrument(name, reconcile, clock)
    local labels = { controller = name }
    return function(key)
        local started = clock()
        self:apply(self.active_workers, "add", labels, 1)
        local ok, value, message = pcall(reconcile, key)
        self:apply(self.active_workers, "add", labels, -1)
        local result = metrics.result_of(ok, value)
        self:apply(self.reconcile_total, "add", { controller = name, result = result }, 1)
        if result == "error" then self:apply(self.reconcile_errors, "add", labels, 1) end
        self:apply(self.reconcile_time, "observe", labels, math.max(0, clock() - started))
        if not ok then error(value, 0) end
        return value, message
    end
end

function M:leader(name, leading)
    self:apply(self.leader_status, "set", { name = name }, leading and 1 or 0)
end

function M:policy_denied(name)
    self:apply(self.policy_denials, "add", { policy = name or "" }, 1)
end

function M:policy_failed(name)
    self:apply(self.policy_errors, "add", { policy = name or "" }, 1)
end

function M:policy_load_failed(name)
    self:apply(self.policy_load_errors, "add", { policy = name or "" }, 1)
end

-- A request's run is going on (started now, or found running after a
-- restart): counted once per request in this process.
function M:attempt_running(key)
    if self.running[key] then return end
    self.running[key] = true
    self:apply(self.attempt_concurrent, "add", nil, 1)
end

-- The request is gone from the cache without an outcome.
function M:attempt_gone(key)
    if not self.running[key] then return end
    self.running[key] = nil
    self:apply(self.attempt_concurrent, "add", nil, -1)
end

-- An attempt ended: labels {request, namespace, reason, succeeded};
-- seconds from its start when it had started (nil for a rejection).
function M:attempt_finished(key, labels, seconds)
    self:attempt_gone(key)
    self:apply(self.attempt_total, "add", labels, 1)
    if seconds then self:apply(self.attempt_duration, "observe", labels, math.max(0, seconds)) end
end

-- The pipeline a request asks for, the `request` label of the attempt
-- family: the cluster resolver's name, else the git resolver's file name
-- without its extension, else "".
-- The host refuses a label value longer than this (IS_METRICS_MAX_VALUE),
-- dropping the sample; the pipeline name is the request's to choose, so it
-- is cut to fit and the attempt still counts.
metrics.MAX_LABEL_VALUE = 512

local function pipeline_name(request)
    local spec = type(request) == "table" and request.spec
    local pipeline = type(spec) == "table" and spec.pipeline
    local ref = type(pipeline) == "table" and pipeline.pipelineRef
    local params = type(ref) == "table" and ref.params
    if type(params) ~= "table" then return "" end
    local by_name = {}
    for _, p in ipairs(params) do
        if type(p) == "table" and type(p.name) == "string" and type(p.value) == "string" then
            by_name[p.name] = p.value
        end
    end
    if by_name.name then return by_name.name end
    local path = by_name.pathInRepo
    if path then
        local base = path:match("([^/]+)$") or path
        return (base:gsub("%.ya?ml$", ""))
    end
    return ""
end

function metrics.pipeline_name(request)
    return quote.head(pipeline_name(request), metrics.MAX_LABEL_VALUE)
end

-- Metrics that record nothing, for a reconciler or chain built without.
local NOTHING = {}
function NOTHING.add() return true end
NOTHING.set, NOTHING.observe, NOTHING.inc = NOTHING.add, NOTHING.add, NOTHING.add

function metrics.none()
    return metrics.new(function() return NOTHING end)
end

return metrics
