local fake_metrics = require "spec.support.fake_metrics"
local metrics = require "internal_services.metrics"

describe("metrics", function()
    local reg, m, logs

    before_each(function()
        reg = fake_metrics.new()
        logs = {}
        m = metrics.new(reg.define, function(level, msg, fields)
            logs[#logs + 1] = { level = level, msg = msg, fields = fields }
        end)
    end)

    it("defines controller-runtime's and the existing controller's families", function()
        local f = reg.families
        assert.same({ "controller", "result" }, f.controller_runtime_reconcile_total.labels)
        assert.equal("Total number of reconciliations per controller", f.controller_runtime_reconcile_total.help)
        assert.equal("histogram", f.controller_runtime_reconcile_time_seconds.type)
        assert.equal(40, #f.controller_runtime_reconcile_time_seconds.buckets)
        assert.same({ "request", "namespace", "reason", "succeeded" }, f.internal_request_attempt_total.labels)
        assert.same({ 10, 20, 40, 60, 150, 300, 450, 900, 1800, 3600 },
            f.internal_request_attempt_duration_seconds.buckets)
        assert.equal("Total number of concurrent InternalRequest attempts",
            f.internal_request_attempt_concurrent_requests.help)
        assert.equal(0, reg:value("internal_request_attempt_concurrent_requests"))
        assert.same({ "name" }, f.leader_election_master_status.labels)
    end)

    it("starts a controller's series at zero", function()
        m:controller("internalrequest", 7)
        for _, result in ipairs { "success", "error", "requeue", "requeue_after" } do
            assert.equal(0, reg:value("controller_runtime_reconcile_total", { controller = "internalrequest", result = result }))
        end
        assert.equal(7, reg:value("controller_runtime_max_concurrent_reconciles", { controller = "internalrequest" }))
        assert.equal(0, reg:value("controller_runtime_active_workers", { controller = "internalrequest" }))
    end)

    describe("instrument", function()
        local now
        local function clock() return now end

        before_each(function() now = 100 end)

        local function total(result)
            return reg:value("controller_runtime_reconcile_total", { controller = "c", result = result })
        end

        it("counts each result as controller-runtime names it, with the time taken", function()
            local outcomes = {
                done = function() now = now + 0.25 end,
                later = function() return { requeue_after = 5 } end,
                now = function() return { requeue_after = 0 } end,
                refused = function() return false, "not yet" end,
            }
            local r = m:instrument("c", function(key) return outcomes[key]() end, clock)
            assert.is_nil(r("done"))
            assert.same({ requeue_after = 5 }, r("later"))
            r("now")
            local v, msg = r("refused")
            assert.same({ false, "not yet" }, { v, msg })
            assert.equal(1, total("success"))
            assert.equal(1, total("requeue_after"))
            assert.equal(1, total("requeue"))
            assert.equal(1, total("error"))
            assert.equal(1, reg:value("controller_runtime_reconcile_errors_total", { controller = "c" }))
            local count, sum = reg:value("controller_runtime_reconcile_time_seconds", { controller = "c" })
            assert.equal(4, count)
            assert.near(0.25, sum, 1e-9)
        end)

        it("passes an error on unchanged and counts it", function()
            local r = m:instrument("c", function() error({ code = 42 }) end, clock)
            local ok, err = pcall(r, "k")
            assert.is_false(ok)
            assert.same({ code = 42 }, err)
            assert.equal(1, total("error"))
        end)

        it("holds a worker while the reconcile runs", function()
            local seen
            local r = m:instrument("c", function()
                seen = reg:value("controller_runtime_active_workers", { controller = "c" })
            end, clock)
            r("k")
            assert.equal(1, seen)
            assert.equal(0, reg:value("controller_runtime_active_workers", { controller = "c" }))
        end)
    end)

    describe("attempts", function()
        local labels = { request = "sign-release", namespace = "tenant-a", reason = "Succeeded", succeeded = true }

        it("go up once per running request and down when they end", function()
            m:attempt_running("tenant-a/r1")
            m:attempt_running("tenant-a/r1")
            m:attempt_running("tenant-a/r2")
            assert.equal(2, reg:value("internal_request_attempt_concurrent_requests"))
            m:attempt_finished("tenant-a/r1", labels, 42)
            assert.equal(1, reg:value("internal_request_attempt_concurrent_requests"))
            m:attempt_gone("tenant-a/r2")
            m:attempt_gone("tenant-a/r2")
            assert.equal(0, reg:value("internal_request_attempt_concurrent_requests"))
            assert.equal(1, reg:value("internal_request_attempt_total", labels))
            local count, sum = reg:value("internal_request_attempt_duration_seconds", labels)
            assert.same({ 1, 42 }, { count, sum })
        end)

        it("never go below zero for a request this process did not see start", function()
            m:attempt_finished("tenant-a/old", labels, 10)
            assert.equal(0, reg:value("internal_request_attempt_concurrent_requests"))
            assert.equal(1, reg:value("internal_request_attempt_total", labels))
        end)

        it("count a rejection without a duration", function()
            local rejected = { request = "x", namespace = "n", reason = "Rejected", succeeded = false }
            m:attempt_finished("n/r", rejected, nil)
            assert.equal(1, reg:value("internal_request_attempt_total", rejected))
            assert.is_nil(reg:value("internal_request_attempt_duration_seconds", rejected))
        end)
    end)

    it("records leadership and policy outcomes by name", function()
        m:leader("b548bb9d.redhat.com", true)
        assert.equal(1, reg:value("leader_election_master_status", { name = "b548bb9d.redhat.com" }))
        m:leader("b548bb9d.redhat.com", false)
        assert.equal(0, reg:value("leader_election_master_status", { name = "b548bb9d.redhat.com" }))
        m:policy_denied("allowlist.lua")
        m:policy_denied("allowlist.lua")
        m:policy_failed("broken.lua")
        m:policy_load_failed("typo.lua")
        m:policy_denied(nil)
        assert.equal(2, reg:value("internal_services_policy_denials_total", { policy = "allowlist.lua" }))
        assert.equal(1, reg:value("internal_services_policy_denials_total", { policy = "" }))
        assert.equal(1, reg:value("internal_services_policy_errors_total", { policy = "broken.lua" }))
        assert.equal(1, reg:value("internal_services_policy_load_errors_total", { policy = "typo.lua" }))
    end)

    it("drops a sample the registry refuses and says so once", function()
        reg.max_series = reg.series
        m:policy_denied("a")
        m:policy_denied("b")
        assert.is_nil(reg:value("internal_services_policy_denials_total", { policy = "a" }))
        assert.equal(1, #logs)
        assert.equal("a metric sample was dropped", logs[1].msg)
        assert.matches("limit reached", logs[1].fields.error)
    end)

    it("names the pipeline a request asks for", function()
        local function req(params) return { spec = { pipeline = { pipelineRef = { params = params } } } } end
        assert.equal("sign-release", metrics.pipeline_name(req { { name = "name", value = "sign-release" },
            { name = "kind", value = "pipeline" } }))
        assert.equal("push-to-cdn", metrics.pipeline_name(req { { name = "url", value = "https://x" },
            { name = "pathInRepo", value = "pipelines/push-to-cdn/push-to-cdn.yaml" } }))
        assert.equal("", metrics.pipeline_name(req {}))
        assert.equal("", metrics.pipeline_name({ spec = "nonsense" }))
        assert.equal("", metrics.pipeline_name(nil))
    end)

    it("cuts a pipeline name to the longest label value the host takes", function()
        local function req(name) return { spec = { pipeline = { pipelineRef = { params = { { name = "name", value = name } } } } } } end
        assert.equal(string.rep("k", metrics.MAX_LABEL_VALUE), metrics.pipeline_name(req(string.rep("k", 102400))))
        -- IS_METRICS_MAX_VALUE in include/is_metrics.h.
        assert.equal(512, metrics.MAX_LABEL_VALUE)
    end)

    it("has a sink that records nothing but keeps the same methods", function()
        local none = metrics.none()
        none:attempt_running("k")
        none:attempt_finished("k", {}, 1)
        none:policy_denied("p")
        assert.equal(3, none:instrument("c", function() return 3 end, function() return 0 end)("k"))
    end)
end)
