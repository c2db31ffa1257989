-- An in-memory Kubernetes API server for specs, speaking the host's raw
-- call (host.kube: raw(cluster, verb, req) -> {code, body, reason, message}).
-- It keeps the semantics the controller depends on: resourceVersion bumps
-- on every write, AlreadyExists / NotFound / Conflict, metadata.generation
-- bumps on spec changes, status subresources, finalizers holding a deleted
-- object with a deletionTimestamp, merge and JSON patches, JSON patch
-- "test", delete preconditions and label selectors. Faults are injected
-- per verb/resource, before (a canned answer) or after (a crash once the
-- write has happened).
local cjson = require "cjson"
local kube = require "internal_services.kube"

local fake_api = {}

-- Resources whose status only changes through the status subresource.
local STATUS_SUBRESOURCE = { internalrequests = true, pipelineruns = true, internalservicesconfigs = true }

local function deepcopy(v)
    if type(v) ~= "table" or v == cjson.null then return v end
    local c = {}
    for k, x in pairs(v) do c[k] = deepcopy(x) end
    return setmetatable(c, getmetatable(v))
end
fake_api.deepcopy = deepcopy

local function is_list(t)
    if type(t) ~= "table" or t == cjson.null then return false end
    if getmetatable(t) == kube.array_mt then return true end
    local n = #t
    if n == 0 then return false end
    for k in pairs(t) do
        if math.type(k) ~= "integer" or k < 1 or k > n then return false end
    end
    return true
end

local function same(a, b)
    return kube.encode(a == nil and cjson.null or a) == kube.encode(b == nil and cjson.null or b)
end

local function status_response(code, reason, message)
    return {
        code = code,
        reason = reason,
        message = message,
        body = kube.encode({ kind = "Status", apiVersion = "v1", status = "Failure",
                             reason = reason, message = message, code = code }),
    }
end

local function ok(code, obj)
    return { code = code, body = kube.encode(obj) }
end

-- RFC 7386: objects merge, null deletes, anything else replaces.
local function merge_patch(target, patch)
    if type(patch) ~= "table" or patch == cjson.null or is_list(patch) then return deepcopy(patch) end
    if type(target) ~= "table" or target == cjson.null or is_list(target) then target = {} end
    for k, v in pairs(patch) do
        if v == cjson.null then target[k] = nil else target[k] = merge_patch(target[k], v) end
    end
    return target
end

local function pointer_tokens(path)
    if path == "" then return {} end
    assert(path:sub(1, 1) == "/", "JSON pointer must start with /: " .. path)
    local tokens = {}
    for token in (path:sub(2) .. "/"):gmatch("(.-)/") do
        tokens[#tokens + 1] = token:gsub("~1", "/"):gsub("~0", "~")
    end
    return tokens
end

-- Index into a container; arrays are 0-based in pointers.
local function slot(container, token)
    if is_list(container) or (type(container) == "table" and next(container) == nil and token:match("^%d+$")) then
        local index = tonumber(token)
        if not index then return nil end
        return index + 1, true
    end
    return token, false
end

-- RFC 6902 subset: add, remove, replace, test. Raises a message on failure.
local function json_patch(doc, ops)
    for _, op in ipairs(ops) do
        local tokens = pointer_tokens(op.path)
        local last = table.remove(tokens)
        local parent = doc
        for _, token in ipairs(tokens) do
            local key = slot(parent, token)
            parent = type(parent) == "table" and parent[key] or nil
            if type(parent) ~= "table" then error("path " .. op.path .. " does not exist", 0) end
        end
        if op.op == "test" then
            local key = slot(parent, last)
            if not same(parent[key], op.value) then
                error("testing value " .. op.path .. " failed", 0)
            end
        elseif op.op == "add" then
            if last == "-" then
                parent[#parent + 1] = deepcopy(op.value)
            else
                local key, indexed = slot(parent, last)
                if indexed then
                    if key > #parent + 1 then error("add index out of range: " .. op.path, 0) end
                    table.insert(parent, key, deepcopy(op.value))
                else
                    parent[key] = deepcopy(op.value)
                end
            end
        elseif op.op == "remove" or op.op == "replace" then
            local key, indexed = slot(parent, last)
            if parent[key] == nil then error("path " .. op.path .. " does not exist", 0) end
            if op.op == "replace" then
                parent[key] = deepcopy(op.value)
            elseif indexed then
                table.remove(parent, key)
            else
                parent[key] = nil
            end
        else
            error("unsupported JSON patch op " .. tostring(op.op), 0)
        end
    end
    return doc
end

-- "a", "!a", "a=b", "a==b", "a!=b", comma separated.
local function selector_matches(selector, labels)
    if not selector or selector == "" then return true end
    labels = labels or {}
    for term in selector:gmatch("[^,]+") do
        term = term:match("^%s*(.-)%s*$")
        local k, v = term:match("^(.-)!=(.*)$")
        if k then
            if labels[k] == v then return false end
        else
            k, v = term:match("^(.-)==?(.*)$")
            if k then
                if labels[k] ~= v then return false end
            elseif term:sub(1, 1) == "!" then
                if labels[term:sub(2)] ~= nil then return false end
            elseif labels[term] == nil then
                return false
            end
        end
    end
    return true
end

local Api = {}
Api.__index = Api

-- opts.now: function returning epoch seconds (for timestamps).
function fake_api.new(opts)
    opts = opts or {}
    local api = setmetatable({
        now = opts.now or os.time,
        store = {},
        calls = {},
        faults = {},
        rv = 1000,
        uids = 0,
    }, Api)
    api.raw = function(cluster, verb, req) return api:handle(cluster, verb, req) end
    return api
end

local function bucket_key(cluster, group, resource)
    return cluster .. "|" .. (group or "") .. "|" .. resource
end

function Api:bucket(cluster, res)
    local key = bucket_key(cluster, res.group, res.resource)
    local b = self.store[key]
    if not b then
        b = {}
        self.store[key] = b
    end
    return b
end

function Api:next_rv()
    self.rv = self.rv + 1
    return tostring(self.rv)
end

local function timestamp(t)
    return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

function Api:key(ns, name)
    return (ns or "") .. "/" .. name
end

-- Stores obj as if created (uid, resourceVersion, generation filled in when
-- missing) and returns the stored copy. For seeding specs.
function Api:put(cluster, res, obj)
    obj = deepcopy(obj)
    local meta = obj.metadata
    if not meta.uid then
        self.uids = self.uids + 1
        meta.uid = string.format("00000000-0000-4000-8000-%012d", self.uids)
    end
    meta.resourceVersion = self:next_rv()
    meta.generation = meta.generation or 1
    meta.creationTimestamp = meta.creationTimestamp or timestamp(self.now())
    self:bucket(cluster, res)[self:key(meta.namespace, meta.name)] = obj
    return deepcopy(obj)
end

-- A copy of the stored object, or nil.
function Api:object(cluster, res, ns, name)
    return deepcopy(self:bucket(cluster, res)[self:key(ns, name)])
end

-- Copies of every stored object of a resource, sorted by namespace/name.
function Api:objects(cluster, res)
    local keys = {}
    for k in pairs(self:bucket(cluster, res)) do keys[#keys + 1] = k end
    table.sort(keys)
    local out = {}
    for _, k in ipairs(keys) do out[#out + 1] = deepcopy(self:bucket(cluster, res)[k]) end
    return out
end

function Api:remove(cluster, res, ns, name)
    self:bucket(cluster, res)[self:key(ns, name)] = nil
end

-- Calls made so far matching filter (same fields as inject).
function Api:count(filter)
    local n = 0
    for _, call in ipairs(self.calls) do
        if self:matches(filter, call.cluster, call.verb, call.req) then n = n + 1 end
    end
    return n
end

function Api:matches(filter, cluster, verb, req)
    return (filter.verb == nil or filter.verb == verb)
        and (filter.cluster == nil or filter.cluster == cluster)
        and (filter.resource == nil or filter.resource == req.resource)
        and (filter.name == nil or filter.name == req.name)
        and (filter.subresource == nil or filter.subresource == (req.subresource or ""))
        and (filter.patch_type == nil or filter.patch_type == req.patch_type)
end

-- fault: filter fields (verb, cluster, resource, name, subresource,
-- patch_type) plus times (default 1, math.huge for always) and one of
--   respond = {code=, reason=, message=}  answered instead of executing,
--   before = function(req) raising instead of executing,
--   after = function(req, resp) run once the call has taken effect (raise
--           to simulate a crash between this write and the next).
function Api:inject(fault)
    fault.times = fault.times or 1
    self.faults[#self.faults + 1] = fault
    return fault
end

function Api:take_fault(cluster, verb, req)
    for _, fault in ipairs(self.faults) do
        if fault.times > 0 and self:matches(fault, cluster, verb, req) then
            fault.times = fault.times - 1
            return fault
        end
    end
end

function Api:handle(cluster, verb, req)
    self.calls[#self.calls + 1] = { cluster = cluster, verb = verb, req = deepcopy(req) }
    local fault = self:take_fault(cluster, verb, req)
    if fault and fault.respond then
        local r = fault.respond
        return status_response(r.code, r.reason, r.message or (r.reason .. " (injected)"))
    end
    if fault and fault.before then fault.before(req) end
    local handler = self["do_" .. verb]
    assert(handler, "fake API: unsupported verb " .. tostring(verb))
    local resp = handler(self, cluster, req)
    if fault and fault.after then fault.after(req, resp) end
    return resp
end

function Api:do_get(cluster, req)
    local obj = self:bucket(cluster, req)[self:key(req.namespace, req.name)]
    if not obj then
        return status_response(404, "NotFound", string.format('%s "%s" not found', req.resource, req.name))
    end
    return ok(200, obj)
end

function Api:do_list(cluster, req)
    local items = kube.array()
    for _, obj in ipairs(self:objects(cluster, req)) do
        if (req.namespace == nil or obj.metadata.namespace == req.namespace)
            and selector_matches(req.label_selector, obj.metadata.labels) then
            items[#items + 1] = obj
        end
    end
    return ok(200, { kind = "List", apiVersion = "v1", metadata = { resourceVersion = tostring(self.rv) }, items = items })
end

function Api:do_create(cluster, req)
    local obj = cjson.decode(req.body)
    obj.metadata = obj.metadata or {}
    local meta = obj.metadata
    meta.namespace = meta.namespace or req.namespace
    if not meta.name or meta.name == "" then
        return status_response(422, "Invalid", "metadata.name: Required value")
    end
    local bucket = self:bucket(cluster, req)
    local key = self:key(meta.namespace, meta.name)
    if bucket[key] then
        return status_response(409, "AlreadyExists",
            string.format('%s "%s" already exists', req.resource, meta.name))
    end
    meta.uid = nil
    meta.resourceVersion = nil
    meta.generation = nil
    meta.creationTimestamp = nil
    return ok(201, self:put(cluster, req, obj))
end

-- Stores new as the next version of old: a resourceVersion in new must
-- match, status and main resource are written separately, generation
-- follows spec, and dropping the last finalizer of a deleted object
-- deletes it.
function Api:commit(cluster, req, old, new)
    local rv = new.metadata and new.metadata.resourceVersion
    if rv ~= nil and rv ~= old.metadata.resourceVersion then
        return status_response(409, "Conflict", string.format(
            'Operation cannot be fulfilled on %s "%s": the object has been modified; please apply your changes to the latest version and try again',
            req.resource, old.metadata.name))
    end
    local result
    if req.subresource == "status" then
        result = deepcopy(old)
        result.status = deepcopy(new.status)
    else
        result = deepcopy(new)
        if STATUS_SUBRESOURCE[req.resource] then result.status = deepcopy(old.status) end
        for _, field in ipairs({ "uid", "creationTimestamp", "deletionTimestamp", "namespace", "name", "generation" }) do
            result.metadata[field] = old.metadata[field]
        end
        if not same(old.spec, new.spec) then
            result.metadata.generation = (old.metadata.generation or 1) + 1
        end
    end
    result.metadata.resourceVersion = self:next_rv()
    local key = self:key(old.metadata.namespace, old.metadata.name)
    local finalizers = result.metadata.finalizers
    if result.metadata.deletionTimestamp and (finalizers == nil or #finalizers == 0) then
        self:bucket(cluster, req)[key] = nil
    else
        self:bucket(cluster, req)[key] = result
    end
    return ok(200, result)
end

function Api:existing(cluster, req)
    local obj = self:bucket(cluster, req)[self:key(req.namespace, req.name)]
    if not obj then
        return nil, status_response(404, "NotFound", string.format('%s "%s" not found', req.resource, req.name))
    end
    return deepcopy(obj)
end

function Api:do_update(cluster, req)
    local old, missing = self:existing(cluster, req)
    if not old then return missing end
    return self:commit(cluster, req, old, cjson.decode(req.body))
end

function Api:do_update_status(cluster, req)
    req.subresource = "status"
    return self:do_update(cluster, req)
end

function Api:do_patch(cluster, req)
    local old, missing = self:existing(cluster, req)
    if not old then return missing end
    local patch = cjson.decode(req.body)
    local new
    if req.patch_type == "json" then
        local applied, result = pcall(json_patch, deepcopy(old), patch)
        if not applied then return status_response(422, "Invalid", tostring(result)) end
        new = result
        -- The test op already guarded the version; the write itself is not
        -- conditional on a resourceVersion the patch may have kept.
        new.metadata.resourceVersion = nil
    elseif req.patch_type == nil or req.patch_type == "merge" then
        new = merge_patch(deepcopy(old), patch)
        local wanted = patch.metadata and patch.metadata.resourceVersion
        new.metadata.resourceVersion = wanted
    else
        return status_response(415, "UnsupportedMediaType", "patch type " .. req.patch_type .. " not supported here")
    end
    return self:commit(cluster, req, old, new)
end

function Api:do_delete(cluster, req)
    local old, missing = self:existing(cluster, req)
    if not old then return missing end
    if (req.precondition_uid and req.precondition_uid ~= old.metadata.uid)
        or (req.precondition_resource_version and req.precondition_resource_version ~= old.metadata.resourceVersion) then
        return status_response(409, "Conflict", "Precondition failed for " .. req.resource .. " " .. req.name)
    end
    local finalizers = old.metadata.finalizers
    if finalizers and #finalizers > 0 then
        if not old.metadata.deletionTimestamp then
            old.metadata.deletionTimestamp = timestamp(self.now())
            old.metadata.resourceVersion = self:next_rv()
            self:bucket(cluster, req)[self:key(req.namespace, req.name)] = old
        end
        return ok(200, old)
    end
    self:remove(cluster, req, req.namespace, req.name)
    return ok(200, { kind = "Status", apiVersion = "v1", status = "Success",
                     details = { name = req.name, kind = req.resource, uid = old.metadata.uid } })
end

-- A cache over the store, as the reconciler reads its informers.
-- informers: name -> {cluster, res}. cache.lag[name][key] = false hides an
-- object (a cache that has not seen it yet); a table stands in for it (a
-- stale copy).
function Api:cache(informers)
    local api = self
    local cache = { lag = {} }
    function cache.get(name, key)
        local lag = cache.lag[name]
        if lag and lag[key] ~= nil then return lag[key] and deepcopy(lag[key]) or nil end
        local where = assert(informers[name], "no informer " .. name)
        local ns, obj_name = key:match("^(.-)/(.+)$")
        return api:object(where[1], where[2], ns, obj_name)
    end
    function cache.list(name)
        local where = assert(informers[name], "no informer " .. name)
        return api:objects(where[1], where[2])
    end
    return cache
end

return fake_api
