-- Requests in flight from the Go controller this one replaces, shaped as
-- it writes them (tests/fixtures/requests/legacy-*.json and
-- pipelineruns/legacy-running.json), followed to their end.
local fixtures = require "spec.support.fixtures"
local world = require "spec.support.world"
local conditions = require "internal_services.conditions"
local resources = require "internal_services.resources"

local NS = world.NAMESPACE
local LEGACY_REF = NS .. "/internalrequest-7xk2p"
local PIPELINE_RUN = resources.pipeline_run

local function condition(request)
    return conditions.get(request) or {}
end

-- The previous controller's PipelineRun of the request named name.
local function legacy_run(name)
    local pr = fixtures.load("pipelineruns/legacy-running.json")
    pr.metadata.labels[resources.labels.name] = name
    pr.metadata.annotations[resources.annotations.primary_resource] = "tenant-a/" .. name
    return pr
end

local RESULTS = { { name = "digest", value = "sha256:abc" }, { name = "tags", value = { "1.0", "latest" } } }

describe("migration from the Go controller", function()
    local w

    before_each(function()
        w = world.new()
    end)

    describe("a request it left Running with status.pipelineRun", function()
        local key

        before_each(function()
            w.api:put("internal", PIPELINE_RUN, legacy_run("legacy-running"))
            key = w:add_request("requests/legacy-running.json")
        end)

        it("is not taken for finished, and its run is adopted, not a new one started", function()
            assert.same({ requeue_after = 300 }, w:reconcile(key))
            assert.equal(1, #w:pipelineruns())
            assert.equal(0, w.api:count({ verb = "create", resource = "pipelineruns" }))
            local request = w:request(key)
            local c = condition(request)
            assert.same({ "Unknown", "Running" }, { c.status, c.reason })
            assert.equal(LEGACY_REF, request.status.pipelineRun)
            -- The previous controller's start time stands.
            assert.equal("2026-11-23T09:58:13Z", request.status.startTime)
            assert.same({ "Adopted" }, w:event_reasons())
        end)

        it("relays the outcome and the results, then cleans up like its own", function()
            w:reconcile(key)
            w:finish_pipelinerun(LEGACY_REF, "True", "Succeeded", "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0",
                RESULTS)
            w:reconcile(key)
            local request = w:request(key)
            local c = condition(request)
            assert.same({ "True", "Succeeded" }, { c.status, c.reason })
            assert.same({ digest = "sha256:abc", tags = '["1.0","latest"]' }, request.status.results)
            assert.is_string(request.status.completionTime)
            assert.is_nil(w:pipelinerun(LEGACY_REF))
            assert.same({}, request.metadata.finalizers or {})
        end)

        it("finishes at once when its run is already done, without a Running write", function()
            w:finish_pipelinerun(LEGACY_REF, "True", "Succeeded", "done", RESULTS)
            w:reconcile(key)
            local request = w:request(key)
            assert.same({ "True", "Succeeded" }, { condition(request).status, condition(request).reason })
            assert.equal("sha256:abc", request.status.results.digest)
            assert.same({ "Succeeded" }, w:event_reasons())
            assert.is_nil(w:pipelinerun(LEGACY_REF))
        end)

        it("is cancelled and released when deleted while running", function()
            w:reconcile(key)
            w:delete_request(key)
            w:reconcile(key)
            assert.equal("Cancelled", w:pipelinerun(LEGACY_REF).spec.status)
            w:finish_pipelinerun(LEGACY_REF, "False", "Cancelled", "PipelineRun cancelled")
            w:reconcile(key)
            assert.is_nil(w:request(key))
            assert.is_nil(w:pipelinerun(LEGACY_REF))
            assert.equal(1, w.api:count({ verb = "patch", resource = "pipelineruns" }))
        end)

        it("never adopts a run created before the request (a predecessor of the same name)", function()
            local pr = w:pipelinerun(LEGACY_REF)
            pr.metadata.creationTimestamp = "2026-11-23T09:00:00Z"
            w.api:put("internal", PIPELINE_RUN, pr)
            w:reconcile(key)
            local c = condition(w:request(key))
            assert.same({ "False", "Failed" }, { c.status, c.reason })
            assert.matches("was deleted before it completed", c.message, 1, true)
            assert.is_table(w:pipelinerun(LEGACY_REF))
        end)
    end)

    it("fails a request whose status.pipelineRun is outside the controller's namespace", function()
        local request = fixtures.load("requests/legacy-running.json")
        request.status.pipelineRun = "elsewhere/internalrequest-7xk2p"
        local key = w:add_request(request)
        w:reconcile(key)
        local c = condition(w:request(key))
        assert.same({ "False", "Failed" }, { c.status, c.reason })
        assert.equal('status.pipelineRun "elsewhere/internalrequest-7xk2p" is not a PipelineRun in the controller\'s '
            .. "namespace internal-services; it is not followed", c.message)
    end)

    describe("a request without status.pipelineRun", function()
        it("Running, adopts the run found by its labels", function()
            local request = fixtures.load("requests/legacy-running.json")
            request.status.pipelineRun = nil
            local key = w:add_request(request)
            w.api:put("internal", PIPELINE_RUN, legacy_run("legacy-running"))
            w:reconcile(key)
            assert.equal(LEGACY_REF, w:request(key).status.pipelineRun)
            assert.equal(0, w.api:count({ verb = "create", resource = "pipelineruns" }))
        end)

        it("in the crash window (finalizer, no status), adopts and never starts a second", function()
            local key = w:add_request("requests/legacy-crash.json")
            w.api:put("internal", PIPELINE_RUN, legacy_run("legacy-crash"))
            w:reconcile(key)
            w:reconcile(key)
            local request = w:request(key)
            assert.equal(LEGACY_REF, request.status.pipelineRun)
            assert.same({ "Unknown", "Running" }, { condition(request).status, condition(request).reason })
            assert.equal(1, #w:pipelineruns())
            assert.equal(0, w.api:count({ verb = "create", resource = "pipelineruns" }))
        end)

        it("finds the run by its owner annotation alone", function()
            local key = w:add_request("requests/legacy-crash.json")
            local pr = legacy_run("legacy-crash")
            pr.metadata.labels = nil
            w.api:put("internal", PIPELINE_RUN, pr)
            w:reconcile(key)
            assert.equal(LEGACY_REF, w:request(key).status.pipelineRun)
            assert.equal(0, w.api:count({ verb = "create", resource = "pipelineruns" }))
        end)

        it("lists the run by its labels when the cache has not seen it", function()
            local key = w:add_request("requests/legacy-crash.json")
            w.api:put("internal", PIPELINE_RUN, legacy_run("legacy-crash"))
            w.cache.lag.pipelineruns = {}
            local list = w.cache.list
            w.cache.list = function(name, ns) return name == "pipelineruns" and {} or list(name, ns) end
            w:reconcile(key)
            assert.equal(LEGACY_REF, w:request(key).status.pipelineRun)
            assert.equal(1, w.api:count({ verb = "list", resource = "pipelineruns" }))
        end)

        it("never lists by a name no label can hold, and starts the request", function()
            local request = fixtures.load("requests/legacy-crash.json")
            request.metadata.name = string.rep("n", 100)
            local key = w:add_request(request)
            w:reconcile(key)
            assert.equal(0, w.api:count({ verb = "list", resource = "pipelineruns" }))
            assert.equal(1, w.api:count({ verb = "create", resource = "pipelineruns" }))
        end)

        it("judged and started anew when no run of it exists anywhere", function()
            local key = w:add_request("requests/legacy-crash.json")
            w:reconcile(key)
            assert.equal(1, w.api:count({ verb = "create", resource = "pipelineruns" }))
        end)
    end)

    it("removes the previous controller's finalizer along with its own", function()
        local request = fixtures.load("requests/legacy-running.json")
        request.metadata.finalizers = { "example.com/keep", "internal-services.appstudio.openshift.io/finalizer",
            resources.finalizer }
        local key = w:add_request(request)
        w.api:put("internal", PIPELINE_RUN, legacy_run("legacy-running"))
        w:finish_pipelinerun(LEGACY_REF, "True", "Succeeded", "done", RESULTS)
        w:reconcile(key)
        assert.same({ "example.com/keep" }, w:request(key).metadata.finalizers)
    end)

    it("leaves a finished request of the previous controller as it is", function()
        local request = fixtures.load("requests/legacy-running.json")
        request.metadata.finalizers = nil
        request.status.conditions[1].reason = "Rejected"
        request.status.conditions[1].message = "the internal request namespace (tenant-a) is not in the allow list"
        local key = w:add_request(request)
        w:reconcile(key)
        assert.same(request.status, w:request(key).status)
        assert.equal(0, w.api:count({ verb = "create" }))
    end)
end)

describe("a failed PipelineRun's TaskRuns", function()
    local w, key, ref

    before_each(function()
        w = world.new()
        key = w:add_request("requests/basic.json")
        w:reconcile(key)
        ref = w:request(key).status.pipelineRun
        local pr = w:pipelinerun(ref)
        pr.status = pr.status or {}
        pr.status.childReferences = {
            { apiVersion = "tekton.dev/v1", kind = "TaskRun", name = "ir-basic-c4738711a560c96c-collect" },
            { apiVersion = "tekton.dev/v1", kind = "TaskRun", name = "ir-basic-c4738711a560c96c-push" },
            { apiVersion = "tekton.dev/v1beta1", kind = "CustomRun", name = "ir-basic-c4738711a560c96c-wait" },
        }
        w.api:put("internal", PIPELINE_RUN, pr)
        w:finish_pipelinerun(ref, "False", "Failed", "Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 0")
        local done = w:pipelinerun(ref)
        done.status.childReferences = pr.status.childReferences
        w.api:put("internal", PIPELINE_RUN, done)
    end)

    it("name the failing TaskRun and its message in the request's condition", function()
        w.api:put("internal", resources.task_run, fixtures.load("taskruns/failed.json"))
        local ok = fixtures.load("taskruns/failed.json")
        ok.metadata.name = "ir-basic-c4738711a560c96c-push"
        ok.status.conditions[1].status = "True"
        ok.status.conditions[1].reason = "Succeeded"
        w.api:put("internal", resources.task_run, ok)
        w:reconcile(key)
        local c = condition(w:request(key))
        assert.same({ "False", "Failed" }, { c.status, c.reason })
        assert.equal("PipelineRun " .. ref .. " failed (Failed): Tasks Completed: 2 (Failed: 1, Cancelled 0), "
            .. "Skipped: 0; TaskRun ir-basic-c4738711a560c96c-collect (Failed): \"step-collect\" exited with code 1",
            c.message)
        assert.equal(2, w.api:count({ verb = "get", resource = "taskruns" }))
    end)

    it("leave out a TaskRun that is gone, with a log line", function()
        w:reconcile(key)
        local c = condition(w:request(key))
        assert.equal("PipelineRun " .. ref .. " failed (Failed): Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 0",
            c.message)
        local logged = 0
        for _, l in ipairs(w.logs) do
            if l.msg == "could not read a TaskRun of a failed PipelineRun" then logged = logged + 1 end
        end
        assert.equal(2, logged)
    end)

    it("are read again when the internal cluster does not answer", function()
        w.api:inject({ verb = "get", resource = "taskruns", respond = { code = 0, reason = "TransportError" } })
        assert.has_error(function() w:reconcile(key) end)
        assert.same({ "Unknown", "Running" }, { condition(w:request(key)).status, condition(w:request(key)).reason })
        w.api:put("internal", resources.task_run, fixtures.load("taskruns/failed.json"))
        w:reconcile(key)
        assert.matches("TaskRun ir-basic-c4738711a560c96c-collect (Failed)", condition(w:request(key)).message, 1, true)
    end)

    it("cap what they add to the message", function()
        local tr = fixtures.load("taskruns/failed.json")
        tr.status.conditions[1].message = string.rep("x", 10000)
        w.api:put("internal", resources.task_run, tr)
        w:reconcile(key)
        local message = condition(w:request(key)).message
        assert.equal("... (truncated)", message:sub(-15))
        assert.is_true(#message < 4096 + 200)
    end)
end)
