-- The workflow of one InternalRequest: judge it by the policies, run its
-- PipelineRun on the internal cluster exactly once, write the outcome back
-- to the remote request, and clean up.
--
-- r:reconcile(key) reads the request from the cache and takes the first
-- step that applies:
--
--   gone                   nothing to do
--   being deleted          cancel and delete its PipelineRun, drop the finalizer
--   finished               delete its PipelineRun (unless debug), drop the finalizer
--   status.pipelineRun set follow the PipelineRun to its end, or to the deadline
--   new                    policies -> template -> finalizer -> create -> Running
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
local pipelinerun = require "internal_services.pipelinerun"
local resources = require "internal_services.resources"
local tekton = require "internal_services.tekton"

local reconciler = {}

local REQUEST = resources.internal_request
local PIPELINE_RUN = resources.pipeline_run
local FINALIZER = resources.finalizer

local R = {}
R.__index = R

-- deps: kube, cache {get, list}, policies (chain), events (emitter), log,
-- now, namespace, remote, internal, deadline_grace, default_timeout,
-- resync (seconds; the longest wait before a running request is looked at
-- again) and metrics (internal_services.metrics; attempts are counted
-- where they start and end).
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

local function finalizer_index(obj)
    local list = obj.metadata.finalizers
    if type(list) ~= "table" then return nil end
    for i, value in ipairs(list) do
        if value == FINALIZER then return i end
    end
    return nil
end

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
-- days_from_civil), so parsing does not depend on the local time zone.
local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = (y >= 0 and y or y - 399) // 400
    local yoe = y - era * 400
    local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
    local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
end

-- Epoch seconds of an RFC 3339 timestamp, or nil.
function reconciler.parse_time(text)
    if type(text) ~= "string" then return nil end
    local y, mo, d, h, mi, s, frac, zone = text:match(
        "^(%d%d%d%d)-(%d%d)-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
    if not y then return nil end
    local t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400
        + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
    if #frac > 1 then t = t + tonumber("0" .. frac) end
    if zone == "Z" or zone == "z" then return t end
    local sign, zh, zm = zone:match("^([+-])(%d%d):(%d%d)$")
    if not sign then return nil end
    local offset = tonumber(zh) * 3600 + tonumber(zm) * 60
    return sign == "+" and t - offset or t + offset
end

-- Entry point ----------------------------------------------------------

function R:reconcile(key)
    local request = self.cache.get("requests", key)
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

-- The request key ("ns/name") a PipelineRun belongs to, from its labels.
function R:pipelinerun_event(pr)
    local labels = type(pr) == "table" and type(pr.metadata) == "table" and pr.metadata.labels
    if type(labels) ~= "table" then return nil end
    local ns, name = labels[resources.labels.namespace], labels[resources.labels.name]
    if type(ns) ~= "string" or ns == "" or type(name) ~= "string" or name == "" then return nil end
    return ns .. "/" .. name
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

-- The request's PipelineRun if it exists and carries the request's uid;
-- a same-named PipelineRun of anyone else is never touched.
function R:owned_pipelinerun(request, cached_only)
    local ref = self:pipelinerun_ref(request)
    local pr = self:read_pipelinerun(ref, cached_only)
    if pr and owner_uid(pr) ~= request.metadata.uid then
        self.log("warn", "PipelineRun does not belong to the request; leaving it alone", {
            pipelinerun = ref, request = key_of(request), owner = tostring(owner_uid(pr)),
        })
        return nil, ref
    end
    return pr, ref
end

-- Writing ----------------------------------------------------------------

function R:write_status(request, status)
    local updated, err = self.kube:patch(self.remote, REQUEST, request.metadata.namespace,
        request.metadata.name, { status = status }, "merge", "status")
    if not updated then raise("writing the status of InternalRequest " .. key_of(request), err) end
    return updated
end

-- JSON patches guarded by a "test" of the resourceVersion: the finalizer
-- list is edited by position, which is only right for the version read.
-- The cached copy is often one version behind (our own status write bumps
-- it), which the guard answers with 422 (or 409): then the live object is
-- read and the patch, rebuilt from it, is tried once more.
function R:patch_finalizers(request, build, doing)
    for attempt = 1, 2 do
        local op = build(request)
        if not op then return request end
        local meta = request.metadata
        local ops = {
            { op = "test", path = "/metadata/resourceVersion", value = meta.resourceVersion },
            op,
        }
        local updated, err = self.kube:patch(self.remote, REQUEST, meta.namespace, meta.name, ops, "json")
        if updated then return updated end
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
            return { op = "add", path = "/metadata/finalizers/-", value = FINALIZER }
        end
        return { op = "add", path = "/metadata/finalizers", value = kube.array { FINALIZER } }
    end, "adding the finalizer to")
end

function R:remove_finalizer(request)
    return self:patch_finalizers(request, function(current)
        local i = finalizer_index(current)
        if not i then return nil end
        return { op = "remove", path = "/metadata/finalizers/" .. (i - 1) }
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
    self:log_pipelinerun("deleted PipelineRun", pr)
end

-- One line per PipelineRun created, cancelled or deleted: operators of the
-- internal cluster may not see the Events on the remote one.
function R:log_pipelinerun(msg, pr, request_key)
    self.log("info", msg, {
        cluster = self.internal, namespace = pr.metadata.namespace, name = pr.metadata.name,
        request = request_key or self:pipelinerun_event(pr) or "",
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

-- A request being deleted: stop and remove its PipelineRun, then let the
-- deletion finish.
function R:finalize(request)
    if not finalizer_index(request) then return nil end
    local pr, ref = self:owned_pipelinerun(request)
    local cancelled = false
    if pr and not tekton.is_done(pr) then cancelled = self:cancel_pipelinerun(pr) end
    if pr and not self:debug() then self:delete_pipelinerun(pr) end
    if cancelled then
        self.events:warning(request, "Cancelled",
            "PipelineRun " .. ref .. " cancelled because the InternalRequest is being deleted")
    end
    self:remove_finalizer(request)
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
    if holding then self:remove_finalizer(request) end
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
    -- carries it without status.pipelineRun may have a PipelineRun from an
    -- attempt cut short before its status was written. That run was
    -- already allowed; adopt it rather than judging (or starting) again.
    if finalizer_index(request) then
        local existing = self:read_pipelinerun(ref)
        if existing then return self:adopt(request, existing) end
    end

    local config = self:config()
    local allowed, message, policy = self.policies:evaluate(request, config, { namespace = ns })
    if not allowed then
        message = policy_message(message, policy)
        return self:conclude(request, conditions.rejected(request, message, self.now()),
            "Warning", "Rejected", message)
    end

    local pr, err = pipelinerun.build(request, config, ns)
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
    self.events:normal(request, "Accepted", self:accepted_message())
    return self:started(request, created)
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
    local uid = owner_uid(pr)
    if uid ~= request.metadata.uid then
        return self:fail(request, string.format(
            "PipelineRun %s already exists and belongs to another request (label %s is %q, this request's uid is %q)",
            ref, resources.labels.uid, tostring(uid), request.metadata.uid))
    end
    self.log("info", "adopting PipelineRun", { request = key_of(request), pipelinerun = ref })
    return self:started(request, pr)
end

function R:started(request, pr)
    local ref = tekton.ref(pr)
    request = self:write_status(request, conditions.running(request, ref, self.now()))
    self.events:normal(request, "Started", "Started PipelineRun " .. ref)
    return self:follow(request, pr)
end

-- A running request: finish it when its PipelineRun is done, else wait.
function R:follow(request, pr)
    local ref = request.status.pipelineRun
    self.metrics:attempt_running(key_of(request))
    pr = pr or self:read_pipelinerun(ref)
    if not pr or owner_uid(pr) ~= request.metadata.uid then return self:vanished(request, ref) end
    if tekton.is_done(pr) then return self:complete(request, pr) end
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
        status = conditions.failed(request, text, now)
        -- What a failed run did produce still helps whoever debugs it.
        if next(results) then status.results = results end
        event_type, event_reason = "Warning", "Failed"
    end
    return self:conclude(request, status, event_type, event_reason, text)
end

-- Not done yet: wait for its next event, or cancel it once the deadline
-- (its pipeline timeout plus a grace period, from status.startTime) has
-- passed; Tekton enforces the timeout itself, this is the backstop for a
-- PipelineRun Tekton lost track of.
function R:await(request, pr)
    local ref = tekton.ref(pr)
    local spec_timeouts = type(pr.spec) == "table" and pr.spec.timeouts
    local timeout_text = type(spec_timeouts) == "table" and spec_timeouts.pipeline or nil
    local timeout = timeout_text and duration.parse(timeout_text)
    if not timeout then
        timeout = self.default_timeout
        timeout_text = duration.format(timeout)
    end
    -- A zero timeout is Tekton's "no timeout".
    if timeout == 0 then return { requeue_after = self.resync } end
    local now = self.now()
    local started = reconciler.parse_time(request.status.startTime)
        or reconciler.parse_time(pr.metadata.creationTimestamp) or now
    local deadline = started + timeout + self.deadline_grace
    if now < deadline then
        return { requeue_after = math.max(1, math.min(deadline - now, self.resync)) }
    end
    self:cancel_pipelinerun(pr)
    return self:fail(request, string.format("PipelineRun %s did not finish within %s (+%s grace); cancelled",
        ref, timeout_text, duration.format(self.deadline_grace)))
end

return reconciler
