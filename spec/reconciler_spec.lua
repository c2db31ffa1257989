local cjson = require "cjson"
local fixtures = require "spec.support.fixtures"
local world = require "spec.support.world"
local conditions = require "internal_services.conditions"
local names = require "internal_services.names"
local reconciler = require "internal_services.reconciler"
local resources = require "internal_services.resources"

local NS = world.NAMESPACE
local FINALIZER = resources.finalizer

local function condition(request)
    return conditions.get(request) or {}
end

local function has_finalizer(request)
    for _, f in ipairs(request.metadata.finalizers or {}) do
        if f == FINALIZER then return true end
    end
    return false
end

local function ref_of(w, key)
    return NS .. "/" .. names.pipelinerun(w:request(key))
end

-- Tekton v1 results as the succeeded.json fixture has them: a string, an
-- array and an object.
local function fixture_results()
    return fixtures.load("pipelineruns/succeeded.json").status.results
end

describe("reconciler", function()
    local w

    before_each(function()
        w = world.new()
    end)

    describe("an allowed request", function()
        local key

        before_each(function()
            key = w:add_request("requests/basic.json")
        end)

        it("creates one PipelineRun and records the request as Running", function()
            local result = w:reconcile(key)
            local prs = w:pipelineruns()
            assert.equal(1, #prs)
            local pr = prs[1]
            assert.equal(NS, pr.metadata.namespace)
            assert.equal(names.pipelinerun(w:request(key)), pr.metadata.name)
            assert.equal(w:request(key).metadata.uid, pr.metadata.labels[resources.labels.uid])

            local request = w:request(key)
            assert.equal(NS .. "/" .. pr.metadata.name, request.status.pipelineRun)
            assert.equal("2026-11-23T10:00:00Z", request.status.startTime)
            local c = condition(request)
            assert.same({ "Unknown", "Running" }, { c.status, c.reason })
            assert.matches(pr.metadata.name, c.message, 1, true)
            assert.is_true(has_finalizer(request))
            assert.same({ "Accepted", "Started" }, w:event_reasons())
            assert.matches("allowlist.lua, git_url.lua", w:events_with("Accepted")[1].message, 1, true)
            -- Waits at most the resync period for a look at the deadline.
            assert.same({ requeue_after = 300 }, result)
        end)

        it("writes Running before any Event", function()
            w:reconcile(key)
            local order = {}
            for _, call in ipairs(w.api.calls) do
                if call.cluster == "remote" and (call.req.resource == "events"
                    or (call.req.resource == "internalrequests" and call.req.subresource == "status")) then
                    order[#order + 1] = call.req.resource
                end
            end
            assert.same({ "internalrequests", "events", "events" }, order)
        end)

        it("does not create again on later reconciles", function()
            w:reconcile(key)
            w:reconcile(key)
            w:reconcile(key)
            assert.equal(1, #w:pipelineruns())
            assert.equal(1, w.api:count({ verb = "create", resource = "pipelineruns" }))
        end)

        it("copies string, array and object results when the PipelineRun succeeds, then deletes it", function()
            w:reconcile(key)
            local ref = ref_of(w, key)
            w.clock = w.clock + 271
            w:finish_pipelinerun(ref, "True", "Succeeded",
                "Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0", fixture_results())
            assert.is_nil(w:reconcile(key))

            local request = w:request(key)
            local c = condition(request)
            assert.same({ "True", "Succeeded" }, { c.status, c.reason })
            assert.equal("PipelineRun " .. ref .. " succeeded: Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0",
                c.message)
            assert.equal("2026-11-23T10:04:31Z", request.status.completionTime)
            assert.same({
                digest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                tags = '["v1.2.3","latest"]',
                image = '{"digest":"sha256:9f86d081","url":"quay.io/example/app"}',
            }, request.status.results)
            assert.is_nil(w:pipelinerun(ref))
            assert.is_false(has_finalizer(request))
            assert.same({ "Accepted", "Started", "Succeeded" }, w:event_reasons())
        end)

        it("keeps the PipelineRun when the config says debug", function()
            local config = fixtures.load("configs/default.json")
            config.spec.debug = true
            w:set_config(config)
            w:reconcile(key)
            local ref = ref_of(w, key)
            w:finish_pipelinerun(ref, "True", "Succeeded", "done", fixture_results())
            w:reconcile(key)
            assert.equal("Succeeded", condition(w:request(key)).reason)
            assert.is_table(w:pipelinerun(ref))
            assert.is_false(has_finalizer(w:request(key)))
        end)

        it("fails with the PipelineRun's own message when it fails", function()
            w:reconcile(key)
            local ref = ref_of(w, key)
            w:finish_pipelinerun(ref, "False", "Failed", "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0")
            w:reconcile(key)
            local request = w:request(key)
            local c = condition(request)
            assert.same({ "False", "Failed" }, { c.status, c.reason })
            assert.equal("PipelineRun " .. ref .. " failed (Failed): Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0",
                c.message)
            assert.is_string(request.status.completionTime)
            assert.is_nil(w:pipelinerun(ref))
            assert.is_false(has_finalizer(request))
            local failed = w:events_with("Failed")
            assert.equal(1, #failed)
            assert.equal("Warning", failed[1].type)
            assert.equal(c.message, failed[1].message)
        end)

        it("names the resolver when Tekton could not get the Pipeline", function()
            w:reconcile(key)
            local ref = ref_of(w, key)
            w:finish_pipelinerun(ref, "False", "CouldntGetPipeline",
                "resolver failed to get Pipeline : resolution took longer than global timeout of 1m0s")
            w:reconcile(key)
            assert.equal("PipelineRun " .. ref .. " failed (CouldntGetPipeline): resolver failed to get Pipeline : "
                .. "resolution took longer than global timeout of 1m0s; the Pipeline was asked of resolver \"cluster\"",
                condition(w:request(key)).message)
        end)

        it("finds its own PipelineRun through a live read while the cache lags", function()
            w:reconcile(key)
            local ref = ref_of(w, key)
            w.cache.lag.pipelineruns = { [ref] = false }
            assert.same({ requeue_after = 300 }, w:reconcile(key))
            assert.equal("Running", condition(w:request(key)).reason)
            assert.is_table(w:pipelinerun(ref))
        end)

        it("keeps going when no event can be recorded", function()
            w.api:inject({ verb = "create", resource = "events", times = math.huge,
                           respond = { code = 403, reason = "Forbidden", message = "events are forbidden" } })
            w:reconcile(key)
            assert.equal(1, #w:pipelineruns())
            assert.equal("Running", condition(w:request(key)).reason)
            local warned = 0
            for _, l in ipairs(w.logs) do
                if l.msg == "could not record event" then warned = warned + 1 end
            end
            assert.equal(2, warned)
        end)
    end)

    describe("rejection", function()
        local function rejected(key)
            local request = w:request(key)
            local c = condition(request)
            assert.same({ "False", "Rejected" }, { c.status, c.reason })
            assert.is_string(request.status.completionTime)
            assert.equal(0, #w:pipelineruns())
            assert.is_false(has_finalizer(request))
            assert.equal(0, w.api:count({ cluster = "internal", verb = "create" }))
            assert.same({ "Rejected" }, w:event_reasons())
            assert.equal(c.message, w:events_with("Rejected")[1].message)
            return c.message
        end

        it("rejects a namespace that is not allowed, naming the policy", function()
            local request = fixtures.load("requests/basic.json")
            request.metadata.namespace = "tenant-x"
            local key = w:add_request(request)
            assert.is_nil(w:reconcile(key))
            assert.equal('rejected by policy allowlist.lua: namespace "tenant-x" is not in the allow list '
                .. "of InternalServicesConfig internal-services/config", rejected(key))
        end)

        it("rejects a git URL that is not allowed", function()
            local config = fixtures.load("configs/default.json")
            config.spec.allowList = { "tenant-b" }
            w:set_config(config)
            local request = fixtures.load("requests/git.json")
            request.spec.pipeline.pipelineRef.params[1].value = "https://evil.example.com/p.git"
            local key = w:add_request(request)
            w:reconcile(key)
            assert.equal('rejected by policy git_url.lua: git resolver url "https://evil.example.com/p.git" '
                .. "is not in allowedGitResolverURLs", rejected(key))
        end)

        it("rejects everything when the config is missing, saying so", function()
            w:delete_config()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            assert.matches("InternalServicesConfig internal-services/config not found", rejected(key), 1, true)
        end)

        it("rejects when a policy fails, naming the policy and the error", function()
            w = world.new({ policies = {
                { name = "allowlist.lua", source = world.shipped_policies()[1].source },
                { name = "loop.lua", source = "return function() while true do end end" },
            } })
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local message = rejected(key)
            assert.matches('policy "loop.lua" failed', message, 1, true)
            assert.matches("budget", message, 1, true)
        end)
    end)

    describe("a malformed request", function()
        it("fails terminally with a message naming the field", function()
            local key = w:add_request("requests/param-not-string.json")
            assert.is_nil(w:reconcile(key))
            local request = w:request(key)
            local c = condition(request)
            assert.same({ "False", "Failed" }, { c.status, c.reason })
            assert.matches("^InternalRequest tenant%-a/[%w-]+ is malformed: spec%.params", c.message)
            assert.equal(0, #w:pipelineruns())
            assert.is_false(has_finalizer(request))
            -- Finished: nothing further happens on the next reconcile.
            local calls = #w.api.calls
            assert.is_nil(w:reconcile(key))
            assert.equal(calls, #w.api.calls)
        end)
    end)

    describe("a finished request", function()
        it("never gets the finalizer", function()
            local key = w:add_request("requests/succeeded.json")
            assert.is_nil(w:reconcile(key))
            assert.is_false(has_finalizer(w:request(key)))
            assert.equal(0, w.api:count({ verb = "patch" }))
            assert.equal(0, w.api:count({ verb = "create" }))
        end)

        it("deletes a PipelineRun left behind when someone else removed the finalizer", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local ref = ref_of(w, key)
            w:finish_pipelinerun(ref, "True", "Succeeded", "done")
            local request = w:request(key)
            request.metadata.finalizers = nil
            request.status.conditions[1].status = "True"
            w.api:put("remote", resources.internal_request, request)
            local gets = w.api:count({ verb = "get" })
            w:reconcile(key)
            assert.is_nil(w:pipelinerun(ref))
            -- Found in the cache: no live read for a request without the finalizer.
            assert.equal(gets, w.api:count({ verb = "get" }))
        end)

        it("retries deleting its PipelineRun until it is gone, holding the finalizer", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local ref = ref_of(w, key)
            w:finish_pipelinerun(ref, "True", "Succeeded", "done")
            w.api:inject({ verb = "delete", resource = "pipelineruns",
                           respond = { code = 500, reason = "InternalError", message = "etcd timeout" } })
            assert.has_error(function() w:reconcile(key) end,
                "deleting PipelineRun " .. ref .. ": InternalError (500): etcd timeout")
            assert.equal("Succeeded", condition(w:request(key)).reason)
            assert.is_true(has_finalizer(w:request(key)))
            assert.is_table(w:pipelinerun(ref))
            assert.is_nil(w:reconcile(key))
            assert.is_nil(w:pipelinerun(ref))
            assert.is_false(has_finalizer(w:request(key)))
        end)
    end)

    describe("a stale cache", function()
        it("re-reads the request when the finalizer patch meets a newer version", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local ref = ref_of(w, key)
            w:finish_pipelinerun(ref, "True", "Succeeded", "done")
            w.api:inject({ verb = "delete", resource = "pipelineruns",
                           respond = { code = 500, reason = "InternalError", message = "etcd timeout" } })
            assert.has_error(function() w:reconcile(key) end)
            -- The cache still holds this copy while the live object moves on.
            local stale = w:request(key)
            local live = w:request(key)
            live.metadata.labels = live.metadata.labels or {}
            live.metadata.labels["touched"] = "yes"
            w.api:put("remote", resources.internal_request, live)
            assert.are_not.equal(stale.metadata.resourceVersion, w:request(key).metadata.resourceVersion)
            w.cache.lag.requests = { [key] = stale }
            assert.is_nil(w:reconcile(key))
            assert.is_nil(w:pipelinerun(ref))
            assert.is_false(has_finalizer(w:request(key)))
            assert.equal("yes", w:request(key).metadata.labels["touched"])
        end)
    end)

    describe("deletion", function()
        it("cancels a running PipelineRun, deletes it once Tekton ended it, then releases the request", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local ref = ref_of(w, key)
            w:delete_request(key)
            assert.is_string(w:request(key).metadata.deletionTimestamp)
            local result = w:reconcile(key)
            assert.is_table(result)
            assert.is_true(result.requeue_after > 0)
            local cancels = 0
            for _, call in ipairs(w.api.calls) do
                if call.verb == "patch" and call.req.resource == "pipelineruns" then
                    assert.same({ spec = { status = "Cancelled" } }, cjson.decode(call.req.body))
                    cancels = cancels + 1
                end
            end
            assert.equal(1, cancels)
            -- Tekton has not ended it yet: the run and the request stay.
            assert.is_table(w:pipelinerun(ref))
            assert.is_table(w:request(key))
            -- A second look before Tekton answers asks nothing again.
            w:reconcile(key)
            assert.equal(1, w.api:count({ verb = "patch", resource = "pipelineruns" }))
            w:finish_pipelinerun(ref, "False", "Cancelled", "PipelineRun cancelled")
            assert.is_nil(w:reconcile(key))
            assert.is_nil(w:pipelinerun(ref))
            assert.is_nil(w:request(key))
            local cancelled = w:events_with("Cancelled")
            assert.equal(1, #cancelled)
            assert.equal("Warning", cancelled[1].type)
            assert.matches(ref, cancelled[1].message, 1, true)
        end)

        it("deletes a PipelineRun Tekton does not end within the grace period", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local ref = ref_of(w, key)
            w:delete_request(key)
            assert.is_table(w:reconcile(key))
            w.clock = w.clock + 61
            assert.is_nil(w:reconcile(key))
            assert.is_nil(w:pipelinerun(ref))
            assert.is_nil(w:request(key))
            assert.is_true(w:logged("PipelineRun not cancelled within the grace period; deleting it"))
        end)

        it("cancels but keeps the PipelineRun with debug", function()
            local config = fixtures.load("configs/default.json")
            config.spec.debug = true
            w:set_config(config)
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local ref = ref_of(w, key)
            w:delete_request(key)
            w:reconcile(key)
            assert.equal("Cancelled", w:pipelinerun(ref).spec.status)
            w:finish_pipelinerun(ref, "False", "Cancelled", "PipelineRun cancelled")
            w:reconcile(key)
            assert.is_table(w:pipelinerun(ref))
            assert.is_nil(w:request(key))
        end)

        it("does nothing for a request without our finalizer", function()
            local request = fixtures.load("requests/basic.json")
            request.metadata.finalizers = { "someone-else" }
            local key = w:add_request(request)
            w:delete_request(key)
            local calls = #w.api.calls
            assert.is_nil(w:reconcile(key))
            assert.equal(calls, #w.api.calls)
            assert.is_table(w:request(key))
        end)
    end)

    describe("a PipelineRun deleted behind its back", function()
        it("fails the request and does not start it again", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local ref = ref_of(w, key)
            w:delete_pipelinerun(ref)
            assert.is_nil(w:reconcile(key))
            local request = w:request(key)
            local c = condition(request)
            assert.same({ "False", "Failed" }, { c.status, c.reason })
            assert.equal("PipelineRun " .. ref .. " was deleted before it completed; it is not started again",
                c.message)
            assert.equal(0, #w:pipelineruns())
            assert.equal(1, w.api:count({ verb = "create", resource = "pipelineruns" }))
            assert.is_false(has_finalizer(request))
            w:reconcile(key)
            assert.equal(0, #w:pipelineruns())
        end)

        it("reads its own writes while the cache trails them", function()
            local key = w:add_request("requests/basic.json")
            local before = w:request(key)
            w:reconcile(key)
            -- Redone at once, the cache still has the request as it was.
            w.cache.lag.requests = { [key] = before }
            local calls = #w.api.calls
            assert.same({ requeue_after = 300 }, w:reconcile(key))
            assert.equal(calls, #w.api.calls)
            local ref = ref_of(w, key)
            w:finish_pipelinerun(ref, "True", "Succeeded", "done")
            w:reconcile(key)
            assert.equal("Succeeded", condition(w:request(key)).reason)
            assert.is_false(has_finalizer(w:request(key)))
            local creates, patches = 0, 0
            for _, call in ipairs(w.api.calls) do
                if call.verb == "create" and call.req.resource == "pipelineruns" then creates = creates + 1 end
                if call.verb == "patch" and call.req.resource == "internalrequests" and not call.req.subresource then
                    patches = patches + 1
                end
            end
            assert.equal(1, creates)
            -- The finalizer added and removed, no patch refused.
            assert.equal(2, patches)
            -- Redone on a cache that has not seen it released: nothing to do.
            calls = #w.api.calls
            assert.is_nil(w:reconcile(key))
            assert.equal(calls, #w.api.calls)
            -- Only the version is kept, until the cache has caught up.
            assert.is_true(w.r.written[key].released)
            w.cache.lag.requests = nil
            assert.is_nil(w:reconcile(key))
            assert.equal(0, w.r.written_count)
        end)

        it("takes the cached request once it is as new as its own write, or newer", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            assert.equal(1, w.r.written_count)
            local live = w:request(key)
            live.metadata.labels = { touched = "yes" }
            w.api:put("remote", resources.internal_request, live)
            assert.equal("yes", w.r:current(key).metadata.labels.touched)
            assert.equal(0, w.r.written_count)
        end)

        it("bounds the requests it remembers", function()
            local saved = reconciler.WRITTEN_MAX
            reconciler.WRITTEN_MAX = 2
            for i = 1, 5 do
                w.r:remember({ metadata = { namespace = "ns", name = "r" .. i, resourceVersion = "1" } })
            end
            reconciler.WRITTEN_MAX = saved
            assert.is_true(w.r.written_count <= 2)
        end)

        it("is not confused by a cache that has not seen the request finish", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local stale = w:request(key)
            local ref = ref_of(w, key)
            w:finish_pipelinerun(ref, "True", "Succeeded", "done")
            w:reconcile(key)
            assert.is_nil(w:pipelinerun(ref))
            -- The PipelineRun's deletion arrives before the request's update.
            w.cache.lag.requests = { [key] = stale }
            assert.is_nil(w:reconcile(key))
            assert.equal("Succeeded", condition(w:request(key)).reason)
        end)
    end)

    describe("crashes", function()
        local key

        before_each(function()
            key = w:add_request("requests/basic.json")
        end)

        local function crash_after(filter)
            filter.after = function() error("crash", 0) end
            w.api:inject(filter)
            assert.has_error(function() w:reconcile(key) end, "crash")
        end

        it("adopts the PipelineRun created before a crash that lost the status write", function()
            crash_after({ verb = "create", resource = "pipelineruns" })
            assert.is_nil(w:request(key).status)
            w:reconcile(key)
            assert.equal(1, #w:pipelineruns())
            assert.equal("Running", condition(w:request(key)).reason)
            assert.equal(ref_of(w, key), w:request(key).status.pipelineRun)
        end)

        it("adopts it even when the policies would now deny the request", function()
            crash_after({ verb = "create", resource = "pipelineruns" })
            w:delete_config()
            w:reconcile(key)
            assert.equal(1, #w:pipelineruns())
            assert.equal("Running", condition(w:request(key)).reason)
        end)

        it("adopts through AlreadyExists when the cache does not show the PipelineRun", function()
            crash_after({ verb = "create", resource = "pipelineruns" })
            local ref = ref_of(w, key)
            w.cache.lag.pipelineruns = { [ref] = false }
            w.api:inject({ verb = "get", resource = "pipelineruns",
                           respond = { code = 404, reason = "NotFound" } })
            w:reconcile(key)
            assert.equal(1, #w:pipelineruns())
            assert.equal(2, w.api:count({ verb = "create", resource = "pipelineruns" }))
            assert.equal("Running", condition(w:request(key)).reason)
        end)

        it("creates once after a crash between adding the finalizer and creating", function()
            crash_after({ verb = "patch", resource = "internalrequests", patch_type = "json" })
            assert.is_true(has_finalizer(w:request(key)))
            assert.equal(0, #w:pipelineruns())
            w:reconcile(key)
            assert.equal(1, #w:pipelineruns())
            assert.equal("Running", condition(w:request(key)).reason)
        end)

        it("keeps one PipelineRun through a crash after the status write", function()
            crash_after({ verb = "patch", resource = "internalrequests", subresource = "status" })
            w:reconcile(key)
            w:reconcile(key)
            assert.equal(1, #w:pipelineruns())
            assert.equal(1, w.api:count({ verb = "create", resource = "pipelineruns" }))
        end)

        it("fails rather than adopt a same-named PipelineRun of another request", function()
            local ref = ref_of(w, key)
            local name = ref:match("/(.+)$")
            w.api:put("internal", resources.pipeline_run, {
                apiVersion = "tekton.dev/v1", kind = "PipelineRun",
                metadata = { name = name, namespace = NS, labels = { [resources.labels.uid] = "other-uid" } },
            })
            w:reconcile(key)
            local c = condition(w:request(key))
            assert.same({ "False", "Failed" }, { c.status, c.reason })
            assert.matches("PipelineRun " .. ref .. " already exists and belongs to another request", c.message, 1, true)
            assert.is_table(w:pipelinerun(ref), "another request's PipelineRun must survive")
            assert.is_false(has_finalizer(w:request(key)))
        end)

        it("fails when the internal cluster refuses the PipelineRun as invalid", function()
            w.api:inject({ verb = "create", resource = "pipelineruns",
                           respond = { code = 422, reason = "Invalid", message = "spec.params: duplicate" } })
            w:reconcile(key)
            local c = condition(w:request(key))
            assert.equal("Failed", c.reason)
            assert.equal("the internal cluster refused PipelineRun " .. ref_of(w, key) .. ": spec.params: duplicate",
                c.message)
        end)

        it("retries a create that failed for a transient reason", function()
            w.api:inject({ verb = "create", resource = "pipelineruns",
                           respond = { code = 0, reason = "TransportError", message = "connection refused" } })
            assert.has_error(function() w:reconcile(key) end,
                "creating PipelineRun " .. ref_of(w, key) .. ": TransportError (0): connection refused")
            assert.is_nil(w:request(key).status)
            w:reconcile(key)
            assert.equal(1, #w:pipelineruns())
        end)
    end)

    describe("the deadline", function()
        it("waits until the pipeline timeout plus grace, then cancels and fails", function()
            local request = fixtures.load("requests/basic.json")
            request.spec.timeouts = { pipeline = "10m" }
            local key = w:add_request(request)
            assert.same({ requeue_after = 300 }, w:reconcile(key))
            local ref = ref_of(w, key)
            w.clock = w.clock + 600
            assert.same({ requeue_after = 60 }, w:reconcile(key))
            w.clock = w.clock + 59
            assert.same({ requeue_after = 1 }, w:reconcile(key))
            w.clock = w.clock + 1
            assert.is_nil(w:reconcile(key))
            local c = condition(w:request(key))
            assert.same({ "False", "Failed" }, { c.status, c.reason })
            assert.equal("PipelineRun " .. ref .. " did not finish within 10m (+1m0s grace); cancelled", c.message)
            local cancels = w.api:count({ verb = "patch", resource = "pipelineruns" })
            assert.equal(1, cancels)
            assert.is_nil(w:pipelinerun(ref))
            assert.is_false(has_finalizer(w:request(key)))
        end)

        it("uses Tekton's default timeout when the PipelineRun records none", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            w.clock = w.clock + 3600 + 60
            w:reconcile(key)
            assert.matches("did not finish within 1h0m0s (+1m0s grace); cancelled",
                condition(w:request(key)).message, 1, true)
        end)

        it("follows the timeout Tekton's webhook wrote on the PipelineRun, never cutting it short", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local ref = ref_of(w, key)
            local pr = w:pipelinerun(ref)
            pr.spec.timeouts = { pipeline = "3h" }
            w.api:put("internal", resources.pipeline_run, pr)
            w.clock = w.clock + 3600 + 61
            assert.same({ requeue_after = 300 }, w:reconcile(key))
            assert.same({ "Unknown", "Running" }, { condition(w:request(key)).status, condition(w:request(key)).reason })
            w.clock = w.clock + 2 * 3600
            w:reconcile(key)
            assert.matches("did not finish within 3h (+1m0s grace); cancelled", condition(w:request(key)).message, 1, true)
        end)

        it("counts from the PipelineRun's own start, as Tekton does", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local ref = ref_of(w, key)
            local pr = w:pipelinerun(ref)
            pr.spec.timeouts = { pipeline = "10m" }
            -- Tekton started it five minutes after the request was accepted.
            pr.status = { startTime = "2026-11-23T10:05:00Z" }
            w.api:put("internal", resources.pipeline_run, pr)
            w.clock = w.clock + 600 + 60
            assert.same({ requeue_after = 300 }, w:reconcile(key))
            w.clock = w.clock + 300
            w:reconcile(key)
            assert.same({ "False", "Failed" }, { condition(w:request(key)).status, condition(w:request(key)).reason })
        end)

        it("has none for a zero timeout", function()
            local request = fixtures.load("requests/basic.json")
            request.spec.timeouts = { pipeline = "0" }
            local key = w:add_request(request)
            w:reconcile(key)
            w.clock = w.clock + 100 * 3600
            assert.same({ requeue_after = 300 }, w:reconcile(key))
        end)
    end)

    describe("request_changed", function()
        local base = { metadata = { resourceVersion = "1", generation = 1 } }

        it("is true for a spec change, a deletion or a resync", function()
            assert.is_true(w.r:request_changed(base, { metadata = { resourceVersion = "2", generation = 2 } }))
            assert.is_true(w.r:request_changed(base,
                { metadata = { resourceVersion = "2", generation = 1, deletionTimestamp = "2026-11-23T10:00:00Z" } }))
            assert.is_true(w.r:request_changed(base, base))
            assert.is_true(w.r:request_changed(nil, base))
        end)

        it("is false for a status-only update", function()
            assert.is_false(w.r:request_changed(base,
                { metadata = { resourceVersion = "2", generation = 1 }, status = { startTime = "x" } }))
        end)
    end)

    describe("pipelinerun_event", function()
        it("maps a PipelineRun to its request by its request annotation, else labels", function()
            local pr = fixtures.load("pipelineruns/succeeded.json")
            assert.equal("tenant-a/basic", w.r:pipelinerun_event(pr))
            -- The name label of a name over 63 characters holds only 63.
            pr.metadata.labels[resources.labels.name] = "bas"
            assert.equal("tenant-a/basic", w.r:pipelinerun_event(pr))
            pr.metadata.annotations[resources.annotations.request] = nil
            assert.equal("tenant-a/bas", w.r:pipelinerun_event(pr))
            pr.metadata.labels[resources.labels.name] = nil
            assert.is_nil(w.r:pipelinerun_event(pr))
            assert.is_nil(w.r:pipelinerun_event({ metadata = {} }))
        end)

        it("skips the DELETED event of a run it deleted itself, once", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local ref = ref_of(w, key)
            local pr = w:pipelinerun(ref)
            w:finish_pipelinerun(ref, "True", "Succeeded", "done", {})
            w:reconcile(key)
            assert.is_nil(w:pipelinerun(ref))
            assert.is_nil(w.r:pipelinerun_event(pr, "DELETED"))
            -- Only its own deletion, and only once.
            assert.equal(key, w.r:pipelinerun_event(pr, "DELETED"))
            assert.equal(0, w.r.deleted_count)
        end)

        it("still reconciles a run someone else deleted, or one of the same name", function()
            local key = w:add_request("requests/basic.json")
            w:reconcile(key)
            local pr = w:pipelinerun(ref_of(w, key))
            assert.equal(key, w.r:pipelinerun_event(pr, "DELETED"))
            w.r:remember_deleted({ metadata = { namespace = pr.metadata.namespace, name = pr.metadata.name, uid = "other" } })
            assert.equal(key, w.r:pipelinerun_event(pr, "DELETED"))
            assert.equal(key, w.r:pipelinerun_event(pr, "MODIFIED"))
        end)

        it("bounds what it remembers", function()
            local saved = reconciler.DELETED_MAX
            reconciler.DELETED_MAX = 2
            for i = 1, 5 do
                w.r:remember_deleted({ metadata = { namespace = "ns", name = "pr-" .. i, uid = "u" .. i } })
            end
            reconciler.DELETED_MAX = saved
            assert.is_true(w.r.deleted_count <= 2)
            assert.equal("u5", w.r.deleted["ns/pr-5"])
        end)
    end)

    describe("parse_time", function()
        it("reads RFC 3339 in UTC and with offsets", function()
            assert.equal(world.T0, reconciler.parse_time("2026-11-23T10:00:00Z"))
            assert.equal(world.T0 + 0.5, reconciler.parse_time("2026-11-23T10:00:00.5Z"))
            assert.equal(world.T0, reconciler.parse_time("2026-11-23T12:00:00+02:00"))
            assert.equal(0, reconciler.parse_time("1970-01-01T00:00:00Z"))
            assert.is_nil(reconciler.parse_time("yesterday"))
        end)
    end)
end)
