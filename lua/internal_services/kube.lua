-- Kubernetes verbs over the host's raw call (host.kube, docs/lua-api.md):
-- tables in, tables out. Every verb returns the decoded object, or nil and
-- an error {code=, reason=, message=} whose tostring is one readable line,
-- so callers can either branch on err.reason or raise it as it is.
local cjson = require "cjson"

local kube = {}

-- Marks a Lua table that must encode as a JSON array even when empty:
-- this cjson encodes every empty table as {}, and an API server rejects
-- {} where a list belongs.
kube.array_mt = { __name = "kube.array" }

function kube.array(t)
    return setmetatable(t or {}, kube.array_mt)
end

local function is_array(t)
    local mt = getmetatable(t)
    if mt == kube.array_mt or (cjson.array_mt and mt == cjson.array_mt) then return true end
    if cjson.empty_array and t == cjson.empty_array then return true end
    local n = #t
    if n == 0 then return false end
    local count = 0
    for _ in pairs(t) do count = count + 1 end
    return count == n
end

local encode_value

local function encode_table(t, out, depth)
    if depth > 100 then error("kube.encode: nesting deeper than 100 levels", 0) end
    if is_array(t) then
        out[#out + 1] = "["
        for i = 1, #t do
            if i > 1 then out[#out + 1] = "," end
            encode_value(t[i], out, depth + 1)
        end
        out[#out + 1] = "]"
        return
    end
    -- Sorted keys: the same table always encodes to the same text, which
    -- keeps request bodies comparable in logs and specs.
    local keys = {}
    for k in pairs(t) do
        if type(k) ~= "string" then
            error("kube.encode: object key " .. tostring(k) .. " is not a string", 0)
        end
        keys[#keys + 1] = k
    end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = cjson.encode(k)
        out[#out + 1] = ":"
        encode_value(t[k], out, depth + 1)
    end
    out[#out + 1] = "}"
end

function encode_value(v, out, depth)
    if type(v) == "table" and v ~= cjson.null then
        encode_table(v, out, depth)
    elseif math.type(v) == "integer" then
        -- cjson prints every number with 14 significant digits.
        out[#out + 1] = string.format("%d", v)
    else
        out[#out + 1] = cjson.encode(v)
    end
end

-- JSON text of a Lua value; strings pass through unchanged so callers may
-- hand over a body they already encoded.
function kube.encode(value)
    if type(value) == "string" then return value end
    local out = {}
    encode_value(value, out, 0)
    return table.concat(out)
end

local err_mt = {
    __tostring = function(e)
        return string.format("%s (%s): %s", tostring(e.reason), tostring(e.code), tostring(e.message))
    end,
}

local reasons_by_code = {
    [400] = "BadRequest", [401] = "Unauthorized", [403] = "Forbidden",
    [404] = "NotFound", [405] = "MethodNotAllowed", [409] = "Conflict",
    [410] = "Expired", [422] = "Invalid", [429] = "TooManyRequests",
    [500] = "InternalError", [503] = "ServiceUnavailable", [504] = "Timeout",
}

local function make_error(code, reason, message)
    return setmetatable({ code = code, reason = reason, message = message }, err_mt)
end

-- Turns the host's answer into (obj) or (nil, err). A failure's reason and
-- message come from the host first, then from the Status body, then from
-- the HTTP code, so err.reason is always set.
local function result(resp)
    local code = resp.code or 0
    local body = resp.body
    local decoded
    if type(body) == "string" and body ~= "" then
        local ok, value = pcall(cjson.decode, body)
        if ok then decoded = value end
    end
    if code == 0 or code >= 400 then
        local status = type(decoded) == "table" and decoded or {}
        local reason = resp.reason or status.reason
        if reason == nil or reason == "" or reason == cjson.null then
            reason = code == 0 and "TransportError" or reasons_by_code[code] or "Unknown"
        end
        local message = resp.message or status.message
        if message == nil or message == cjson.null then
            message = "HTTP " .. tostring(code)
        end
        return nil, make_error(code, reason, message)
    end
    if body == nil or body == "" then return {} end
    if decoded == nil then
        return nil, make_error(code, "InvalidResponse", "response body is not JSON")
    end
    return decoded
end

local function request(res, ns, name)
    return {
        group = res.group,
        version = res.version,
        resource = res.resource,
        namespace = ns,
        name = name,
    }
end

local Client = {}
Client.__index = Client

-- raw(cluster, verb, req) -> {code=, body=, reason=, message=}, i.e. host.kube.
function kube.new(raw)
    assert(type(raw) == "function", "kube.new needs the raw call (host.kube)")
    return setmetatable({ raw = raw }, Client)
end

function Client:call(cluster, verb, req)
    return result(self.raw(cluster, verb, req))
end

-- opts: subresource.
function Client:get(cluster, res, ns, name, opts)
    local req = request(res, ns, name)
    req.subresource = opts and opts.subresource
    return self:call(cluster, "get", req)
end

-- opts: label_selector, field_selector. Returns the List object.
function Client:list(cluster, res, ns, opts)
    local req = request(res, ns)
    if opts then
        req.label_selector = opts.label_selector
        req.field_selector = opts.field_selector
    end
    return self:call(cluster, "list", req)
end

function Client:create(cluster, res, ns, obj, opts)
    local req = request(res, ns)
    req.body = kube.encode(obj)
    req.field_manager = opts and opts.field_manager
    return self:call(cluster, "create", req)
end

local function object_name(obj)
    local meta = type(obj) == "table" and obj.metadata
    local name = meta and meta.name
    assert(type(name) == "string", "object has no metadata.name")
    return name
end

-- Sends obj whole; a metadata.resourceVersion in it makes the write
-- conditional (Conflict when the object changed since).
function Client:update(cluster, res, ns, obj)
    local req = request(res, ns, object_name(obj))
    req.body = kube.encode(obj)
    return self:call(cluster, "update", req)
end

function Client:update_status(cluster, res, ns, obj)
    local req = request(res, ns, object_name(obj))
    req.subresource = "status"
    req.body = kube.encode(obj)
    return self:call(cluster, "update_status", req)
end

-- patch_type: "merge" (default), "json", "strategic" or "apply".
function Client:patch(cluster, res, ns, name, patch, patch_type, subresource)
    local req = request(res, ns, name)
    req.body = kube.encode(patch)
    req.patch_type = patch_type or "merge"
    req.subresource = subresource
    return self:call(cluster, "patch", req)
end

-- opts: propagation_policy, precondition_uid, precondition_resource_version.
-- Returns the Status or, while finalizers hold it, the object itself.
function Client:delete(cluster, res, ns, name, opts)
    local req = request(res, ns, name)
    if opts then
        req.propagation_policy = opts.propagation_policy
        req.precondition_uid = opts.precondition_uid
        req.precondition_resource_version = opts.precondition_resource_version
    end
    return self:call(cluster, "delete", req)
end

return kube
