local kube = require "internal_services.kube"
local events = require "internal_services.events"
local fake_api = require "spec.support.fake_api"

local EVENT = { group = "", version = "v1", resource = "events" }

local request = {
    apiVersion = "appstudio.redhat.com/v1alpha1",
    kind = "InternalRequest",
    metadata = { namespace = "tenant-a", name = "basic", uid = "u-1", resourceVersion = "42" },
}

describe("events", function()
    local api, emitter, logged, clock

    before_each(function()
        clock = 1795428000.25
        api = fake_api.new({ now = function() return clock end })
        logged = {}
        emitter = events.new({
            kube = kube.new(api.raw),
            now = function() return clock end,
            log = function(level, msg, fields) logged[#logged + 1] = { level = level, msg = msg, fields = fields } end,
            instance = "pod-1",
        })
    end)

    it("records a core/v1 Event on the request in its namespace", function()
        assert.is_true(emitter:normal(request, "Started", "Started PipelineRun ns/pr"))
        local list = api:objects("remote", EVENT)
        assert.equal(1, #list)
        local e = list[1]
        assert.equal("tenant-a", e.metadata.namespace)
        assert.matches("^basic%.%x+$", e.metadata.name)
        assert.same({
            apiVersion = "appstudio.redhat.com/v1alpha1", kind = "InternalRequest",
            namespace = "tenant-a", name = "basic", uid = "u-1", resourceVersion = "42",
        }, e.involvedObject)
        assert.equal("Started", e.reason)
        assert.equal("Normal", e.type)
        assert.equal("Started PipelineRun ns/pr", e.message)
        assert.same({ component = "internal-services" }, e.source)
        assert.equal("2026-11-23T10:00:00Z", e.firstTimestamp)
        assert.equal(e.firstTimestamp, e.lastTimestamp)
        assert.equal(1, e.count)
        assert.equal("internal-services", e.reportingComponent)
        assert.equal("pod-1", e.reportingInstance)
    end)

    it("gives events in the same instant distinct names", function()
        emitter:warning(request, "Failed", "one")
        emitter:warning(request, "Failed", "two")
        local list = api:objects("remote", EVENT)
        assert.equal(2, #list)
        assert.are_not.equal(list[1].metadata.name, list[2].metadata.name)
        assert.equal("Warning", list[1].type)
    end)

    it("keeps names of long requests within 253 characters", function()
        local long = { apiVersion = "v1", kind = "X",
                       metadata = { namespace = "n", name = string.rep("a", 253), uid = "u" } }
        assert.is_true(emitter:normal(long, "Accepted", "ok"))
        assert.equal(253, #api:objects("remote", EVENT)[1].metadata.name)
    end)

    it("logs and returns false when the event cannot be recorded", function()
        api:inject({ verb = "create", resource = "events", respond = { code = 403, reason = "Forbidden" } })
        assert.is_false(emitter:warning(request, "Rejected", "denied"))
        assert.equal(1, #logged)
        assert.equal("warn", logged[1].level)
        assert.equal("Rejected", logged[1].fields.reason)
        assert.equal("tenant-a/basic", logged[1].fields.object)
        assert.matches("Forbidden", logged[1].fields.error)
    end)

    it("never raises, even when the API call itself errors", function()
        api:inject({ verb = "create", resource = "events", before = function() error("connection reset") end })
        assert.is_false(emitter:normal(request, "Started", "x"))
        assert.matches("connection reset", logged[1].fields.error)
    end)
end)
