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

    it("counts a repeat within the window on the Event already recorded", function()
        assert.is_true(emitter:warning(request, "Failed", "boom"))
        clock = clock + 30
        assert.is_true(emitter:warning(request, "Failed", "boom"))
        local list = api:objects("remote", EVENT)
        assert.equal(1, #list)
        assert.equal(2, list[1].count)
        assert.equal("2026-11-23T10:00:30Z", list[1].lastTimestamp)
        assert.equal("2026-11-23T10:00:00Z", list[1].firstTimestamp)
        -- Another message is another event; past the window, a new one.
        assert.is_true(emitter:warning(request, "Failed", "other"))
        clock = clock + events.AGGREGATE_WINDOW
        assert.is_true(emitter:warning(request, "Failed", "boom"))
        assert.equal(3, #api:objects("remote", EVENT))
    end)

    it("creates the Event again when the one it counted on is gone", function()
        emitter:normal(request, "Started", "x")
        local name = api:objects("remote", EVENT)[1].metadata.name
        api:remove("remote", EVENT, "tenant-a", name)
        assert.is_true(emitter:normal(request, "Started", "x"))
        local list = api:objects("remote", EVENT)
        assert.equal(1, #list)
        assert.equal(1, list[1].count)
    end)

    it("bounds the events it remembers", function()
        local saved = events.AGGREGATE_MAX
        events.AGGREGATE_MAX = 3
        for i = 1, 10 do emitter:normal(request, "R", "m" .. i) end
        events.AGGREGATE_MAX = saved
        assert.is_true(emitter.recent_count <= 3)
    end)

    it("with spawn, writes the event in a task of its own", function()
        local tasks = {}
        local async = events.new({ kube = kube.new(api.raw), now = function() return clock end,
            spawn = function(fn) tasks[#tasks + 1] = fn end })
        assert.is_true(async:normal(request, "Started", "later"))
        assert.equal(0, #api:objects("remote", EVENT))
        assert.equal(1, #tasks)
        assert.is_true(tasks[1]())
        assert.equal(1, #api:objects("remote", EVENT))
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
