local tekton = require "internal_services.tekton"
local cjson = require "cjson"
local fixtures = require "support.fixtures"

local function pr(name) return fixtures.load("pipelineruns/" .. name .. ".json") end

describe("tekton.state", function()
    local cases = {
        { "pending", "pending", "", "" },
        { "pending-spec", "pending", 'PipelineRun "ir-basic-c4738711a560c96c" is pending', "PipelineRunPending" },
        { "started", "running", "", "Started" },
        { "running", "running", "Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 2, Skipped: 0", "Running" },
        { "succeeded", "succeeded", "Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0", "Succeeded" },
        { "failed", "failed", "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0", "Failed" },
        { "cancelled", "failed", 'PipelineRun "ir-basic-c4738711a560c96c" was cancelled', "Cancelled" },
        { "timeout", "failed", 'PipelineRun "ir-basic-c4738711a560c96c" failed to finish within "1h0m0s"',
            "PipelineRunTimeout" },
    }
    for _, case in ipairs(cases) do
        it("reads pipelineruns/" .. case[1] .. ".json as " .. case[2], function()
            local state, message, reason = tekton.state(pr(case[1]))
            assert.are.equal(case[2], state)
            assert.are.equal(case[3], message)
            assert.are.equal(case[4], reason)
        end)
    end

    it("is running when started without a condition yet", function()
        assert.are.equal("running", tekton.state({ status = { startTime = "2026-11-23T10:00:01Z" } }))
    end)

    it("ignores conditions of other types", function()
        local run = pr("succeeded")
        run.status.conditions[1].type = "Ready"
        assert.are.equal("running", tekton.state(run))
    end)
end)

describe("tekton.is_done", function()
    it("is true for True and False Succeeded conditions", function()
        for _, name in ipairs { "succeeded", "failed", "cancelled", "timeout", "succeeded-no-results" } do
            assert.is_true(tekton.is_done(pr(name)), name)
        end
    end)

    it("is false while pending or running", function()
        for _, name in ipairs { "pending", "pending-spec", "started", "running" } do
            assert.is_false(tekton.is_done(pr(name)), name)
        end
        assert.is_false(tekton.is_done({}))
    end)
end)

describe("tekton.results", function()
    it("keeps strings and JSON-encodes arrays and objects", function()
        assert.same({
            digest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            tags = '["v1.2.3","latest"]',
            image = '{"digest":"sha256:9f86d081","url":"quay.io/example/app"}',
        }, tekton.results(pr("succeeded")))
    end)

    it("sorts object keys so the encoding is stable", function()
        local run = { status = { results = {
            { name = "o", value = { z = "1", a = "2", m = "3" } },
        } } }
        assert.are.equal('{"a":"2","m":"3","z":"1"}', tekton.results(run).o)
        assert.same({ z = "1", a = "2", m = "3" }, cjson.decode(tekton.results(run).o))
    end)

    it("keeps empty arrays and strings", function()
        local run = { status = { results = { { name = "none", value = {} }, { name = "blank", value = "" } } } }
        assert.same({ none = "[]", blank = "" }, tekton.results(run))
    end)

    it("never drops a result without a value", function()
        local run = { status = { results = { { name = "a" }, { name = "b", value = cjson.null } } } }
        assert.same({ a = "", b = "" }, tekton.results(run))
    end)

    it("is empty when the PipelineRun has no results", function()
        assert.same({}, tekton.results(pr("succeeded-no-results")))
        assert.same({}, tekton.results(pr("pending")))
        assert.same({}, tekton.results({}))
    end)
end)

describe("tekton.cancel_patch", function()
    it("sets spec.status to Cancelled", function()
        assert.same({ spec = { status = "Cancelled" } }, tekton.cancel_patch())
        assert.are.equal('{"spec":{"status":"Cancelled"}}', cjson.encode(tekton.cancel_patch()))
    end)

    it("returns a fresh table each time", function()
        local patch = tekton.cancel_patch()
        patch.spec.status = "changed"
        assert.are.equal("Cancelled", tekton.cancel_patch().spec.status)
    end)
end)

describe("tekton.ref", function()
    it("is namespace/name", function()
        assert.are.equal("internal-services/ir-basic-c4738711a560c96c", tekton.ref(pr("running")))
    end)
end)

describe("tekton.encode_stable", function()
    it("encodes nested values with sorted keys", function()
        assert.are.equal('{"a":[1,"x"],"b":{"c":true}}',
            tekton.encode_stable({ b = { c = true }, a = { 1, "x" } }))
    end)
end)

describe("tekton.encode_stable on strings", function()
    it("writes / unescaped and keeps other escapes", function()
        local value = { "quay.io/a", 'q"\\/\n' }
        local text = tekton.encode_stable(value)
        assert.are.equal('["quay.io/a","q\\"\\\\/\\n"]', text)
        assert.same(value, cjson.decode(text))
    end)
end)

describe("tekton.child_taskruns", function()
    it("lists the TaskRun children in order, leaving other kinds out", function()
        local pr = { status = { childReferences = {
            { kind = "TaskRun", name = "a" }, { kind = "CustomRun", name = "b" }, { kind = "TaskRun", name = "c" },
            { kind = "TaskRun" } } } }
        assert.same({ "a", "c" }, tekton.child_taskruns(pr))
        assert.same({}, tekton.child_taskruns({}))
        assert.same({ "ir-basic-c4738711a560c96c-collect" },
            tekton.child_taskruns(fixtures.load("pipelineruns/failed.json")))
    end)
end)

describe("tekton.timeout", function()
    it("reads spec.timeouts.pipeline and the start Tekton counts from", function()
        local seconds, text, since = tekton.timeout(fixtures.load("pipelineruns/failed.json"), 3600)
        assert.equal(3600, seconds)
        assert.equal("1h0m0s", text)
        assert.equal(1795428001, since)
    end)

    it("falls back to the default and the creation time", function()
        local seconds, text, since = tekton.timeout({ metadata = { creationTimestamp = "2026-11-23T10:00:00Z" },
            spec = { timeouts = { tasks = "5m" } } }, 7200)
        assert.same({ 7200, "2h0m0s", 1795428000 }, { seconds, text, since })
        seconds, text, since = tekton.timeout({ spec = { timeouts = { pipeline = "not a duration" } } }, 60)
        assert.same({ 60, "1m0s" }, { seconds, text })
        assert.is_nil(since)
    end)
end)
