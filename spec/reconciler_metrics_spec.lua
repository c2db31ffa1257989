-- What the reconciler reports as requests flow: the attempt family of the
-- existing controller and a log line for every PipelineRun it creates,
-- cancels or deletes.
local fake_metrics = require "spec.support.fake_metrics"
local fixtures = require "spec.support.fixtures"
local world = require "spec.support.world"
local metrics = require "internal_services.metrics"
local names = require "internal_services.names"

local NS = world.NAMESPACE

describe("reconciler metrics and logs", function()
    local w, reg

    before_each(function()
        reg = fake_metrics.new()
        w = world.new({ metrics = metrics.new(reg.define) })
    end)

    local function concurrent()
        return reg:value("internal_request_attempt_concurrent_requests")
    end

    local function labels(reason, succeeded, namespace)
        return { request = "push-artifacts", namespace = namespace or "tenant-a", reason = reason, succeeded = succeeded }
    end

    local function logged(msg)
        local out = {}
        for _, l in ipairs(w.logs) do
            if l.msg == msg then out[#out + 1] = l.fields end
        end
        return out
    end

    it("counts a run from its start to its success, with its duration", function()
        local key = w:add_request("requests/basic.json")
        w:reconcile(key)
        assert.equal(1, concurrent())
        local name = names.pipelinerun(w:request(key))
        assert.same({ { cluster = "internal", namespace = NS, name = name, request = key } },
            logged("created PipelineRun"))

        w.clock = w.clock + 125
        w:finish_pipelinerun(NS .. "/" .. name, "True", "Succeeded", "All Tasks have completed executing")
        w:reconcile(key)
        assert.equal(0, concurrent())
        assert.equal(1, reg:value("internal_request_attempt_total", labels("Succeeded", true)))
        local count, sum = reg:value("internal_request_attempt_duration_seconds", labels("Succeeded", true))
        assert.same({ 1, 125 }, { count, sum })
        assert.same({ { cluster = "internal", namespace = NS, name = name, request = key } },
            logged("deleted PipelineRun"))

        -- Looking at the finished request again counts nothing more.
        w:reconcile(key)
        assert.equal(1, reg:value("internal_request_attempt_total", labels("Succeeded", true)))
        assert.equal(0, concurrent())
    end)

    it("counts a failed run as not succeeded", function()
        local key = w:add_request("requests/basic.json")
        w:reconcile(key)
        w.clock = w.clock + 30
        w:finish_pipelinerun(NS .. "/" .. names.pipelinerun(w:request(key)), "False", "Failed", "step failed")
        w:reconcile(key)
        assert.equal(0, concurrent())
        assert.equal(1, reg:value("internal_request_attempt_total", labels("Failed", false)))
        assert.equal(1, (reg:value("internal_request_attempt_duration_seconds", labels("Failed", false))))
    end)

    it("counts a rejection without a run", function()
        local request = fixtures.load("requests/basic.json")
        request.metadata.namespace = "tenant-x"
        local key = w:add_request(request)
        w:reconcile(key)
        assert.equal(0, concurrent())
        assert.equal(1, reg:value("internal_request_attempt_total", labels("Rejected", false, "tenant-x")))
        assert.is_nil(reg:value("internal_request_attempt_duration_seconds", labels("Rejected", false, "tenant-x")))
        assert.same({}, logged("created PipelineRun"))
    end)

    it("counts a request deleted while its run goes on, and logs the cancel and the delete", function()
        local key = w:add_request("requests/basic.json")
        w:reconcile(key)
        local name = names.pipelinerun(w:request(key))
        w.clock = w.clock + 10
        w:delete_request(key)
        w:reconcile(key)
        -- Counted once Tekton has ended the cancelled run and it is gone.
        assert.equal(1, concurrent())
        w:finish_pipelinerun(NS .. "/" .. name,
            "False", "Cancelled", "PipelineRun cancelled")
        w:reconcile(key)
        assert.equal(0, concurrent())
        assert.equal(1, reg:value("internal_request_attempt_total", labels("Deleted", false)))
        local count, sum = reg:value("internal_request_attempt_duration_seconds", labels("Deleted", false))
        assert.same({ 1, 10 }, { count, sum })
        local line = { cluster = "internal", namespace = NS, name = name, request = key }
        assert.same({ line }, logged("cancelled PipelineRun"))
        assert.same({ line }, logged("deleted PipelineRun"))
    end)

    it("counts a deleted request once even when a step of its finalization is retried", function()
        local key = w:add_request("requests/basic.json")
        w:reconcile(key)
        w:delete_request(key)
        w:reconcile(key)
        w:finish_pipelinerun(NS .. "/" .. names.pipelinerun(w:request(key)), "False", "Cancelled", "PipelineRun cancelled")
        w.api:inject({ cluster = "remote", verb = "patch", times = 1, respond = { code = 503, reason = "ServiceUnavailable" } })
        assert.has_error(function() w:reconcile(key) end)
        assert.is_nil(reg:value("internal_request_attempt_total", labels("Deleted", false)))
        w:reconcile(key)
        assert.equal(1, reg:value("internal_request_attempt_total", labels("Deleted", false)))
        assert.equal(0, concurrent())
    end)

    it("counts a request found running after a restart once, and lets it go when it disappears", function()
        local key = w:add_request("requests/basic.json")
        w:reconcile(key)
        -- A new process: fresh metrics, the same world.
        reg = fake_metrics.new()
        w.r.metrics = metrics.new(reg.define)
        w:reconcile(key)
        w:reconcile(key)
        assert.equal(1, concurrent())
        w.api:remove("remote", require("internal_services.resources").internal_request, "tenant-a", "basic")
        w:reconcile(key)
        assert.equal(0, concurrent())
    end)
end)
