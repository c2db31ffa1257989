-- The workflow of one InternalRequest: judge it by the policies, run its
-- PipelineRun on the internal cluster exactly once, write the outcome back
-- to the remote request, and clean up.
--
-- r:reconcile(key) reads the request from the cache and takes the first
-- step that applies:
--
--   gone                   nothing to do
--   being deleted          cancel its PipelineRun, delete it once Tekton has
--                          ended it, drop the finalizer
--   finished               delete its PipelineRun (unless debug), drop the finalizer
--   status.pipelineRun set follow the PipelineRun to its end, or to the deadline
--   new                    policies -> template -> finalizer -> create -> Running
--
-- Requests in flight from the Go controller this one replaces are followed
-- the same way: it writes Running as False/Running (finished means reason
-- Succeeded, Failed or Rejected, never just False) and names its runs by
-- generateName, so its PipelineRun is found by status.pipelineRun or, when
-- it crashed before writing that, by its name/namespace labels or owner
-- annotation (ownership.lua), adopted, and cleaned up like our own.
--
-- One PipelineRun per request, whatever crashes: its name is derived from
-- the request's namespace, name and uid, so a second create after a lost
-- answer or a restart gets AlreadyExists and adopts the first.
-- status.pipelineRun is written only once the PipelineRun exists, so a
-- request that names one which no longer exists had it deleted by someone
-- else; it ends Failed and is never started again.
--
-- Every step is idempotent: a step that fails raises, and the work queue
-- retries the key with backoff from the top.
local cjson = require "cjson"
local conditions = require "internal_services.conditions"
local duration = require "internal_services.duration"
local kube = require "internal_services.kube"
local metrics = require "internal_services.metrics"
local names = require "internal_services.names"
local ownership = require "internal_services.ownership"
local pipelinerun = require "internal_services.pipelinerun"
local quote = require "internal_services.quote"
local resources = require "internal_services.resources"
local tekton = require "internal_services.tekton"
local timestamps = require "internal_services.timestamps"

local reconciler = {}

local REQUEST = resources.internal_request
local PIPELINE_RUN = resources.pipeline_run
local TASK_RUN = resources.task_run
local FINALIZER = resources.finalizer

local R = {}
R.__index = R

-- deps: kube, cache {get, list}, policies (chain), events (emitter), log,
-- now, namespace, remote, internal, deadline_grace, default_timeout (the
-- pipeline timeout Tekton applies to a run that records none, i.e. its
-- default-timeout-minutes), resync (seconds; the longest wait before a
-- running request is looked at again) and metrics (internal_services.metrics;
-- attempts are counted where they start and end).
function reconciler.new(deps)
    for _, field in ipairs { "kube", "cache", "policies", "events", "now", "namespace" } do
        assert(deps[field] ~= nil, "reconciler.new: deps." .. field .. " is required")
    end
    return setmetatable({
        kube = deps.kube,
        cache = deps.cache,
        policies = deps.policies,
        events = deps.events,
        log = deps.log or function() end,
        now = deps.now,
        namespace = deps.namespace,
        remote = deps.remote or "remote",
        internal = deps.internal or "internal",
        deadline_grace = deps.deadline_grace or 60,
        default_timeout = deps.default_timeout or 3600,
        resync = deps.resync or 300,
        metrics = deps.metrics or metrics.none(),
        -- PipelineRuns this process deleted, "ns/name" -> uid, until their
        -- DELETED event comes back (see pipelinerun_event).
        deleted = {},
        deleted_count = 0,
        -- Requests as this process last wrote them, while the cache may
        -- not have caught up (see current).
        written = {},
        written_count = 0,
    }, R)
end

local function present(value)
    return value ~= nil and value ~= cjson.null
end

local function key_of(obj)
    return obj.metadata.namespace .. "/" .. obj.metadata.name
end

local function split(ref)
    local ns, name = ref:match("^([^/]+)/(.+)$")
    assert(ns, "not a namespace/name reference: " .. tostring(ref))
    return ns, name
end

-- Raises err (a kube error) for the work queue to retry.
local function raise(doing, err)
    error(doing .. ": " .. tostring(err), 0)
end

-- The "ns/name" status.pipelineRun holds, once the PipelineRun exists.
local function named_pipelinerun(request)
    local status = request.status
    if type(status) == "table" and type(status.pipelineRun) == "string" and status.pipelineRun ~= "" then
        return status.pipelineRun
    end
    return nil
end

-- Positions (1-based, ascending) of the request's finalizers in the
-- controller's domain: ours, and the previous controller's.
local function own_finalizers(obj)
    local out = {}
    local list = obj.metadata.finalizers
    if type(list) ~= "table" then return out end
    for i, value in ipairs(list) do
        if resources.is_own_finalizer(value) then out[#out + 1] = i end
    end
    return out
end

local function finalizer_index(obj)
    return own_finalizers(obj)[1]
end

-- The reconciler's own memories (self[name], counted in name_count) are
-- bounded: past max entries one starts afresh, which costs at most a pass.
local function bounded_set(self, name, max, key, value)
    local count = name .. "_count"
    if self[name][key] == nil then
        if self[count] >= max then self[name], self[count] = {}, 0 end
        self[count] = self[count] + 1
    end
    self[name][key] = value
end

local function bounded_del(self, name, key)
    if self[name][key] ~= nil then
        self[name][key] = nil
        self[name .. "_count"] = self[name .. "_count"] - 1
    end
end

-- Epoch seconds of an RFC 3339 timestamp, or nil.
reconciler.parse_time = timestamps.parse

-- Entry point ----------------------------------------------------------

function R:reconcile(key)
    local request = self:current(key)
    if not request then
        self.metrics:attempt_gone(key)
        return nil
    end
    if present(request.metadata.deletionTimestamp) then return self:finalize(request) end
    if conditions.is_finished(request) then return self:clean_up(request) end
    return self:proceed(request)
end

-- An unfinished request: follow its PipelineRun, or start one.
function R:proceed(request)
    if named_pipelinerun(request) then return self:follow(request) end
    return self:start(request)
end

-- True when a change of a request needs a reconcile: spec (generation)
-- changed, deletion started, or a resync delivered the same version. Our
-- own status writes come back as status-only updates and do not.
function R:request_changed(old, new)
    if type(old) ~= "table" or type(new) ~= "table" then return true end
    local om, nm = old.metadata or {}, new.metadata or {}
    if om.resourceVersion == nm.resourceVersion then return true end
    if om.generation ~= nm.generation then return true end
    return present(nm.deletionTimestamp) and not present(om.deletionTimestamp)
end

-- The request key ("ns/name") a PipelineRun event is for, from the run's
-- labels or (the previous controller's runs) its owner annotation; nil
-- when it needs no reconcile. The DELETED event of a run this process
-- deleted itself says nothing new: its request was finished or being
-- deleted, and its cleanup goes on (or is retried) without it. Reconciled
-- anyway, it would find a cached request one write behind and spend a
-- pass on reads and a refused patch.
function R:pipelinerun_event(pr, kind)
    if kind == "DELETED" and type(pr) == "table" and type(pr.metadata) == "table" then
        local ref = tostring(pr.metadata.namespace) .. "/" .. tostring(pr.metadata.name)
        local uid = self.deleted[ref]
        if uid ~= nil then
            bounded_del(self, "deleted", ref)
            if uid == pr.metadata.uid then return nil end
        end
    end
    return ownership.request_key(pr)
end

-- Remembers a run deleted by this process until its DELETED event (one
-- lost to a relist only costs a pass).
reconciler.DELETED_MAX = 10000
function R:remember_deleted(pr)
    bounded_set(self, "deleted", reconciler.DELETED_MAX, tekton.ref(pr), pr.metadata.uid)
end

-- Reading state ----------------------------------------------------------

function R:config()
    return self.cache.get("config", self.namespace .. "/" .. resources.config_name)
end

function R:debug()
    local config = self:config()
    return type(config) == "table" and type(config.spec) == "table" and config.spec.debug == true
end

-- The PipelineRun at ref from the cache, else (unless cached_only) from
-- the API server: the cache may not have seen our own create yet. nil when
-- it does not exist.
function R:read_pipelinerun(ref, cached_only)
    local pr = self.cache.get("pipelineruns", ref)
    if pr or cached_only then return pr end
    local ns, name = split(ref)
    local live, err = self.kube:get(self.internal, PIPELINE_RUN, ns, name)
    if live then return live end
    if err.reason == "NotFound" then return nil end
    raise("reading PipelineRun " .. ref, err)
end

local function owner_uid(pr)
    local labels = pr.metadata.labels
    return type(labels) == "table" and labels[resources.labels.uid] or nil
end

-- The reference of the request's PipelineRun: the one its status names,
-- else the one it would have been created as.
function R:pipelinerun_ref(request)
    return named_pipelinerun(request) or self.namespace .. "/" .. names.pipelinerun(request)
end

-- The previous controller's PipelineRun of a request whose status names
-- none: from the cache, else (unless cached_only) listed by its labels.
function R:legacy_pipelinerun(request, cached_only)
    local pr = ownership.legacy_of(request, self.cache.list("pipelineruns", self.namespace))
    if pr or cached_only then return pr end
    -- A name no label value can hold was never one of its labels (and is
    -- no valid selector).
    if not names.is_label_value(request.metadata.name) then return nil end
    local list, err = self.kube:list(self.internal, PIPELINE_RUN, self.namespace,
        { label_selector = ownership.selector(request) })
    if not list then raise("listing the PipelineRuns of InternalRequest " .. key_of(request), err) end
    return ownership.legacy_of(request, type(list.items) == "table" and list.items or {})
end

-- The request's PipelineRun if it exists and belongs to it (ownership.lua);
-- a same-named PipelineRun of anyone else is never touched. Without
-- status.pipelineRun, a request that holds a finalizer or says it runs
-- may have a run of the previous controller, looked up by its labels.
function R:owned_pipelinerun(request, cached_only)
    local ref = self:pipelinerun_ref(request)
    local pr = self:read_pipelinerun(ref, cached_only)
    if pr and not ownership.belongs(request, pr) then
        self.log("warn", "PipelineRun does not belong to the request; leaving it alone", {
            pipelinerun = ref, request = key_of(request), owner = tostring(owner_uid(pr)),
        })
        return nil, ref
    end
    if not pr and not named_pipelinerun(request)
        and (finalizer_index(request) or conditions.is_running(request)) then
        local legacy = self:legacy_pipelinerun(request, cached_only)
        if legacy then return legacy, tekton.ref(legacy) end
    end
    return pr, ref
end

-- The cache of requests trails this process's own writes: a reconcile
-- redone at once (its PipelineRun's events come fast) would find the
-- request as it was before its Running status or finalizer patch, and
-- start over or send a patch the resourceVersion guard refuses. The object
-- each write returned stands in for the cached one until the cache has a
-- version at least as new (etcd's resourceVersions are increasing
-- numbers; one that is not a number, or another uid, defers to the cache).
reconciler.WRITTEN_MAX = 10000

function R:current(key)
    local cached = self.cache.get("requests", key)
    local mine = self.written[key]
    if mine and cached then
        local c = tonumber(cached.metadata.resourceVersion)
        local m = tonumber(mine.metadata.resourceVersion)
        if c and m and c < m and cached.metadata.uid == mine.metadata.uid then
            -- Released: finished (or deleted) and its finalizer removed.
            if mine.released then return nil end
            return mine
        end
    end
    if mine then self:forget(key) end
    return cached
end

-- Once a request is released, only its version and uid are kept: a
-- reconcile on a cache that has not seen the release has nothing to do.
function R:released(request)
    if type(request) ~= "table" or type(request.metadata) ~= "table" then return end
    local meta = request.metadata
    bounded_set(self, "written", reconciler.WRITTEN_MAX, key_of(request), {
        released = true,
        metadata = { resourceVersion = meta.resourceVersion, uid = meta.uid },
    })
end

function R:remember(request)
    if type(request) ~= "table" or type(request.metadata) ~= "table" then return request end
    bounded_set(self, "written", reconciler.WRITTEN_MAX, key_of(request), request)
    return request
end

function R:forget(key)
    bounded_del(self, "written", key)
end

-- Writing ----------------------------------------------------------------

function R:write_status(request, status)
    local updated, err = self.kube:patch(self.remote, REQUEST, request.metadata.namespace,
        request.metadata.name, { status = status }, "merge", "status")
    if not updated then raise("writing the status of InternalRequest " .. key_of(request), err) end
    return self:remember(updated)
end

-- JSON patches guarded by a "test" of the resourceVersion: the finalizer
-- list is edited by position, which is only right for the version read.
-- The cached copy is often one version behind (our own status write bumps
-- it), which the guard answers with 422 (or 409): then the live object is
-- read and the patch, rebuilt from it, is tried once more.
function R:patch_finalizers(request, build, doing)
    for attempt = 1, 2 do
        local edits = build(request)
        if not edits then return request end
        local meta = request.metadata
        local ops = { { op = "test", path = "/metadata/resourceVersion", value = meta.resourceVersion } }
        for _, op in ipairs(edits) do ops[#ops + 1] = op end
        local updated, err = self.kube:patch(self.remote, REQUEST, meta.namespace, meta.name, ops, "json")
        if updated then return self:remember(updated) end
        if err.reason == "NotFound" then return nil end
        if attempt == 2 or (err.code ~= 422 and err.code ~= 409) then
            raise(doing .. " InternalRequest " .. key_of(request), err)
        end
        local fresh, get_err = self.kube:get(self.remote, REQUEST, meta.namespace, meta.name)
        if not fresh then
            if get_err.reason == "NotFound" then return nil end
            raise("reading InternalRequest " .. key_of(request), get_err)
        end
        request = fresh
    end
end

function R:ensure_finalizer(request)
    return self:patch_finalizers(request, function(current)
        if finalizer_index(current) then return nil end
        local list = current.metadata.finalizers
        if type(list) == "table" and #list > 0 then
            return { { op = "add", path = "/metadata/finalizers/-", value = FINALIZER } }
        end
        return { { op = "add", path = "/metadata/finalizers", value = kube.array { FINALIZER } } }
    end, "adding the finalizer to")
end

-- Removes every finalizer in the controller's domain, the previous
-- controller's too (highest position first, so each index holds).
function R:remove_finalizer(request)
    return self:patch_finalizers(request, function(current)
        local positions = own_finalizers(current)
        if #positions == 0 then return nil end
        local ops = {}
        for i = #positions, 1, -1 do
            ops[#ops + 1] = { op = "remove", path = "/metadata/finalizers/" .. (positions[i] - 1) }
        end
        return ops
    end, "removing the finalizer from")
end

-- Deletes pr; one already gone is fine, any other failure raises so the
-- key is retried until it is gone (a PipelineRun must not leak).
function R:delete_pipelinerun(pr)
    local ref = tekton.ref(pr)
    local _, err = self.kube:delete(self.internal, PIPELINE_RUN, pr.metadata.namespace, pr.metadata.name, {
        propagation_policy = "Background",
        precondition_uid = pr.metadata.uid,
    })
    if err and err.reason ~= "NotFound" then raise("deleting PipelineRun " .. ref, err) end
    if not err then self:remember_deleted(pr) end
    self:log_pipelinerun("deleted PipelineRun", pr)
end

-- One line per PipelineRun created, cancelled or deleted: operators of the
-- internal cluster may not see the Events on the remote one.
function R:log_pipelinerun(msg, pr, request_key)
    self.log("info", msg, {
        cluster = self.internal, namespace = pr.metadata.namespace, name = pr.metadata.name,
        request = request_key or ownership.request_key(pr) or "",
    })
end

-- Asks Tekton to stop pr; returns false when it is already gone.
function R:cancel_pipelinerun(pr)
    local ref = tekton.ref(pr)
    local patched, err = self.kube:patch(self.internal, PIPELINE_RUN, pr.metadata.namespace,
        pr.metadata.name, tekton.cancel_patch(), "merge")
    if patched then
        self:log_pipelinerun("cancelled PipelineRun", pr)
        return true
    end
    if err.reason == "NotFound" then return false end
    raise("cancelling PipelineRun " .. ref, err)
end

-- Steps -------------------------------------------------------------------

-- A request being deleted: cancel its PipelineRun and wait until Tekton
-- reports it Cancelled, so that Tekton stops its TaskRuns and deletes their
-- Pods itself (a run deleted while running is left to the garbage
-- collector, finally tasks and all); then remove it and let the deletion
-- finish. A run Tekton does not end within the grace period is removed
-- all the same: a request being deleted must not hang on it.
function R:finalize(request)
    if not finalizer_index(request) then return nil end
    local pr, ref = self:owned_pipelinerun(request)
    if pr and not tekton.is_done(pr) then
        if not tekton.is_cancel_requested(pr) then
            if self:cancel_pipelinerun(pr) then
                self.events:warning(request, "Cancelled",
                    "PipelineRun " .. ref .. " cancelled because the InternalRequest is being deleted")
            end
        end
        local since = reconciler.parse_time(request.metadata.deletionTimestamp) or self.now()
        local wait = since + self.deadline_grace - self.now()
        if wait > 0 then return { requeue_after = math.max(1, math.min(wait, self.resync)) } end
        self.log("warning", "PipelineRun not cancelled within the grace period; deleting it",
            { pipelinerun = ref, grace = duration.format(self.deadline_grace) })
    end
    if pr and not self:debug() then self:delete_pipelinerun(pr) end
    self:released(self:remove_finalizer(request))
    -- Counted once the step is done: a retry of a failed step must not
    -- count the attempt twice.
    if not conditions.is_finished(request) then self:count_attempt(request, "Deleted", self.now()) end
    return nil
end

-- A finished request: its PipelineRun goes (unless debug), then the
-- finalizer. The finalizer is only removed once the PipelineRun is deleted
-- or kept on purpose, so without it a cache lookup is enough: it still
-- catches a PipelineRun left behind when someone else removed the
-- finalizer, without an API call per request on every resync.
function R:clean_up(request)
    local holding = finalizer_index(request) ~= nil
    if not self:debug() then
        local pr = self:owned_pipelinerun(request, not holding)
        if pr then self:delete_pipelinerun(pr) end
    end
    if holding then self:released(self:remove_finalizer(request)) end
    return nil
end

-- Counts a request's attempt as ended with reason at time ended (epoch
-- seconds); its duration from status.startTime, when it had started.
function R:count_attempt(request, reason, ended)
    local status = type(request.status) == "table" and request.status or {}
    local started = reconciler.parse_time(status.startTime)
    self.metrics:attempt_finished(key_of(request), {
        request = metrics.pipeline_name(request), namespace = request.metadata.namespace,
        reason = reason, succeeded = reason == conditions.reasons.succeeded,
    }, started and ended and ended - started or nil)
end

-- Writes a final status, records the event and cleans up.
function R:conclude(request, status, event_type, reason, message)
    request = self:write_status(request, status)
    self:count_attempt(request, reason, reconciler.parse_time(status.completionTime))
    self.events:emit(request, event_type, reason, message)
    self.log("info", "InternalRequest " .. reason:lower(), { request = key_of(request), message = message })
    return self:clean_up(request)
end

function R:fail(request, message)
    return self:conclude(request, conditions.failed(request, message, self.now()), "Warning", "Failed", message)
end

local function policy_message(message, policy)
    message = type(message) == "string" and message ~= "" and message or "request denied"
    if type(policy) == "string" and policy ~= "" and not message:find(policy, 1, true) then
        return "rejected by policy " .. policy .. ": " .. message
    end
    return message
end

-- A new request: judge, template, create.
function R:start(request)
    local ns = self.namespace
    local ref = ns .. "/" .. names.pipelinerun(request)
    -- The finalizer is added just before the create, so a request that
    -- carries it (or says it runs) without status.pipelineRun may have a
    -- PipelineRun from an attempt cut short before its status was written,
    -- ours or the previous controller's. That run was already allowed;
    -- adopt it rather than judging (or starting) again.
    if finalizer_index(request) or conditions.is_running(request) then
        local existing = self:owned_pipelinerun(request)
        if existing then return self:adopt(request, existing) end
    end

    local config = self:config()
    local allowed, message, policy = self.policies:evaluate(request, config, { namespace = ns })
    if not allowed then
        message = policy_message(message, policy)
        return self:conclude(request, conditions.rejected(request, message, self.now()),
            "Warning", "Rejected", message)
    end

    local pr, err = pipelinerun.build(request, config, ns, self.log)
    if not pr then return self:fail(request, "InternalRequest " .. key_of(request) .. " is malformed: " .. err) end

    request = self:ensure_finalizer(request)
    if not request then return nil end
    local created, cerr = self.kube:create(self.internal, PIPELINE_RUN, ns, pr)
    if not created then
        if cerr.reason == "AlreadyExists" then
            local existing, gerr = self.kube:get(self.internal, PIPELINE_RUN, ns, pr.metadata.name)
            if not existing then raise("reading PipelineRun " .. ref .. " after AlreadyExists", gerr) end
            return self:adopt(request, existing)
        end
        if cerr.code == 400 or cerr.code == 422 then
            return self:fail(request, string.format("the internal cluster refused PipelineRun %s: %s",
                ref, tostring(cerr.message)))
        end
        raise("creating PipelineRun " .. ref, cerr)
    end
    self:log_pipelinerun("created PipelineRun", created, key_of(request))
    return self:started(request, created, "Accepted")
end

function R:accepted_message()
    local list = self.policies.names and self.policies:names() or {}
    if #list == 0 then return "Allowed: no policies are loaded" end
    return "Allowed by policies " .. table.concat(list, ", ")
end

-- Takes over an existing PipelineRun of this request's name, if it is the
-- request's own.
function R:adopt(request, pr)
    local ref = tekton.ref(pr)
    if not ownership.belongs(request, pr) then
        return self:fail(request, string.format(
            "PipelineRun %s already exists and belongs to another request (label %s is %q, this request's uid is %q)",
            ref, resources.labels.uid, tostring(owner_uid(pr)), request.metadata.uid))
    end
    local legacy = ownership.is_legacy(pr)
    self.log("info", legacy and "adopting the previous controller's PipelineRun" or "adopting PipelineRun",
        { request = key_of(request), pipelinerun = ref })
    return self:started(request, pr, legacy and "Adopted" or nil)
end

-- Running is written first: the Events come after it, off the path that
-- reports it (and, in the controller, in tasks of their own).
function R:started(request, pr, event_reason)
    local ref = tekton.ref(pr)
    request = self:write_status(request, conditions.running(request, ref, self.now()))
    if event_reason == "Accepted" then self.events:normal(request, "Accepted", self:accepted_message()) end
    if event_reason == "Adopted" then
        self.events:normal(request, "Adopted", "Following PipelineRun " .. ref .. ", started by the previous controller")
    else
        self.events:normal(request, "Started", "Started PipelineRun " .. ref)
    end
    return self:follow(request, pr)
end

-- A running request: finish it when its PipelineRun is done, else wait.
-- One the previous controller wrote as False/Running is rewritten in this
-- controller's form (Unknown/Running) once, while its run goes on.
function R:follow(request, pr)
    local ref = request.status.pipelineRun
    if ref:match("^([^/]+)/[^/]+$") ~= self.namespace then
        return self:fail(request, string.format("status.pipelineRun %q is not a PipelineRun in the controller's "
            .. "namespace %s; it is not followed", ref, self.namespace))
    end
    self.metrics:attempt_running(key_of(request))
    pr = pr or self:read_pipelinerun(ref)
    if not pr or not ownership.belongs(request, pr) then return self:vanished(request, ref) end
    if tekton.is_done(pr) then return self:complete(request, pr) end
    local condition = conditions.get(request)
    if condition and condition.status ~= "Unknown" then return self:started(request, pr, "Adopted") end
    return self:await(request, pr)
end

-- The PipelineRun the request names is gone before it finished.
function R:vanished(request, ref)
    -- The cache may be behind our own writes: the request may already
    -- have finished and its PipelineRun been deleted by us. Only the live
    -- request tells a deletion behind our back from our own cleanup.
    local ns, name = request.metadata.namespace, request.metadata.name
    local live, err = self.kube:get(self.remote, REQUEST, ns, name)
    if not live then
        if err.reason == "NotFound" then return nil end
        raise("reading InternalRequest " .. key_of(request), err)
    end
    if present(live.metadata.deletionTimestamp) then return self:finalize(live) end
    if conditions.is_finished(live) then return self:clean_up(live) end
    if named_pipelinerun(live) ~= ref then return self:proceed(live) end
    return self:fail(live, "PipelineRun " .. ref .. " was deleted before it completed; it is not started again")
end

function R:complete(request, pr)
    local ref = tekton.ref(pr)
    local state, message, reason = tekton.state(pr)
    local results = tekton.results(pr)
    local now = self.now()
    local status, event_type, event_reason, text
    if state == "succeeded" then
        text = "PipelineRun " .. ref .. " succeeded" .. (message ~= "" and ": " .. message or "")
        status = conditions.succeeded(request, results, now)
        conditions.set(status, { status = "True", reason = conditions.reasons.succeeded, message = text },
            now, request.metadata.generation)
        event_type, event_reason = "Normal", "Succeeded"
    else
        text = "PipelineRun " .. ref .. " failed"
            .. (reason ~= "" and " (" .. reason .. ")" or "")
            .. (message ~= "" and ": " .. message or "")
        local why = self:failed_taskruns(pr)
        if why ~= "" then text = text .. "; " .. why end
        -- Tekton's message for a resolver nobody serves is only a timeout;
        -- naming the resolver asked says what was wrong.
        local ref_spec = type(pr.spec) == "table" and pr.spec.pipelineRef
        if reason == "CouldntGetPipeline" and type(ref_spec) == "table" and type(ref_spec.resolver) == "string" then
            text = text .. "; the Pipeline was asked of resolver " .. quote.text(ref_spec.resolver)
        end
        status = conditions.failed(request, text, now)
        -- What a failed run did produce still helps whoever debugs it.
        if next(results) then status.results = results end
        event_type, event_reason = "Warning", "Failed"
    end
    return self:conclude(request, status, event_type, event_reason, text)
end

-- The longest a relayed TaskRun explanation may be: a condition message is
-- capped at 32768 bytes, and the PipelineRun's own sentence comes first.
reconciler.TASKRUN_MESSAGE_MAX = 4096

-- What the failed TaskRuns of a failed PipelineRun say, "TaskRun name
-- (reason): message; ...", or "": the PipelineRun's own message only
-- counts tasks. A TaskRun that cannot be read is left out with a log line
-- (it may already be gone); an unreachable cluster retries the key.
function R:failed_taskruns(pr)
    local parts = {}
    for _, name in ipairs(tekton.child_taskruns(pr)) do
        local tr, err = self.kube:get(self.internal, TASK_RUN, pr.metadata.namespace, name)
        if tr then
            local state, message, reason = tekton.state(tr)
            if state == "failed" then
                parts[#parts + 1] = "TaskRun " .. name .. (reason ~= "" and " (" .. reason .. ")" or "")
                    .. (message ~= "" and ": " .. message or "")
            end
        elseif err.code == 0 or err.code >= 500 then
            raise("reading TaskRun " .. pr.metadata.namespace .. "/" .. name, err)
        else
            self.log("warn", "could not read a TaskRun of a failed PipelineRun", {
                pipelinerun = tekton.ref(pr), taskrun = name, error = tostring(err),
            })
        end
    end
    local text = table.concat(parts, "; ")
    local max = reconciler.TASKRUN_MESSAGE_MAX
    if #text > max then text = text:sub(1, max - 16) .. "... (truncated)" end
    return text
end

-- Not done yet: wait for its next event, or cancel it once the deadline
-- has passed: the timeout Tekton applies to this PipelineRun (as its
-- webhook defaulted spec.timeouts.pipeline), counted from the run's own
-- start, plus a grace period. Tekton enforces the timeout itself; this is
-- the backstop for a PipelineRun Tekton lost track of, and never cuts a
-- run Tekton would let go on.
function R:await(request, pr)
    local ref = tekton.ref(pr)
    local timeout, timeout_text, since = tekton.timeout(pr, self.default_timeout)
    -- A zero timeout is Tekton's "no timeout".
    if timeout == 0 then return { requeue_after = self.resync } end
    local now = self.now()
    local started = since or reconciler.parse_time(request.status.startTime) or now
    local deadline = started + timeout + self.deadline_grace
    if now < deadline then
        return { requeue_after = math.max(1, math.min(deadline - now, self.resync)) }
    end
    self:cancel_pipelinerun(pr)
    return self:fail(request, string.format("PipelineRun %s did not finish within %s (+%s grace); cancelled",
        ref, timeout_text, duration.format(self.deadline_grace)))
end

return reconciler
