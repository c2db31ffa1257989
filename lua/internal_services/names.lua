-- Names of the objects the controller creates for a request.
--
-- The PipelineRun name is part of the on-cluster contract: the controller
-- finds the PipelineRun of a request by this name, so changing the formula
-- would orphan every PipelineRun in flight across an upgrade. The formula is
--
--   "ir-" .. prefix .. "-" .. hash
--
-- where
--   hash   = the 64-bit FNV-1a hash of namespace .. "/" .. name .. "/" .. uid
--            (the request's metadata, bytes as they are), written as 16
--            lowercase hex digits;
--   prefix = the request name lowercased, every character outside [a-z0-9-]
--            replaced by "-", runs of "-" collapsed to one, leading and
--            trailing "-" removed, cut to 43 characters, trailing "-"
--            removed again. When nothing is left the name is "ir-" .. hash.
--
-- The result is at most 3 + 43 + 1 + 16 = 63 characters, a valid DNS-1123
-- label and label value. The uid in the hash makes a re-created request with
-- the same name get a new PipelineRun rather than adopt the old one.

local names = {}

names.PREFIX_MAX = 43
names.HASH_DIGITS = 16

local FNV64_OFFSET = 0xcbf29ce484222325
local FNV64_PRIME = 0x100000001b3

-- Lua 5.4 integers are 64-bit and multiplication wraps, which is exactly
-- the modular arithmetic FNV-1a needs.
function names.fnv1a64(text)
    local hash = FNV64_OFFSET
    for i = 1, #text do
        hash = (hash ~ text:byte(i)) * FNV64_PRIME
    end
    return string.format("%016x", hash)
end

-- Reduces any string to the characters a DNS-1123 label allows, without
-- leading or trailing "-", at most max characters. May return "".
function names.sanitize(text, max)
    local s = text:lower():gsub("[^a-z0-9-]", "-"):gsub("%-+", "-")
    s = s:gsub("^%-", ""):sub(1, max):gsub("%-$", "")
    return s
end

local function required(request, field)
    local meta = type(request) == "table" and request.metadata
    local value = type(meta) == "table" and meta[field]
    if type(value) ~= "string" or value == "" then
        error("names.pipelinerun: request has no metadata." .. field, 3)
    end
    return value
end

-- Deterministic PipelineRun name for a request (see the formula above).
-- Every object read from the API server has namespace, name and uid, so a
-- missing one is a programming error and raises.
function names.pipelinerun(request)
    local namespace = required(request, "namespace")
    local name = required(request, "name")
    local uid = required(request, "uid")
    local hash = names.fnv1a64(namespace .. "/" .. name .. "/" .. uid)
    local prefix = names.sanitize(name, names.PREFIX_MAX)
    if prefix == "" then return "ir-" .. hash end
    return "ir-" .. prefix .. "-" .. hash
end

-- A request name as a label value. A request name is a DNS subdomain of up
-- to 253 characters; a label value holds 63 of [A-Za-z0-9._-] and ends in a
-- letter or digit. A longer name is cut at 63 and what is left of a "."
-- or "-" at its end removed; the whole name travels in the request
-- annotation, and the uid label tells requests apart.
function names.label_value(name)
    local s = name:gsub("[^%w._-]", "-"):sub(1, 63):gsub("[^%w]+$", ""):gsub("^[^%w]+", "")
    return s
end

-- True when text is a DNS-1123 label (what Kubernetes accepts as a
-- namespace or ServiceAccount name).
function names.is_dns_label(text)
    if type(text) ~= "string" or #text < 1 or #text > 63 then return false end
    return text:match("^[a-z0-9]$") ~= nil
        or text:match("^[a-z0-9][-a-z0-9]*[a-z0-9]$") ~= nil
end

-- A label value: empty, or at most 63 characters of [A-Za-z0-9._-]
-- starting and ending with a letter or digit.
function names.is_label_value(text)
    if type(text) ~= "string" or #text > 63 then return false end
    if text == "" then return true end
    return text:match("^[%w]$") ~= nil or text:match("^[%w][%w._-]*[%w]$") ~= nil
end

-- A DNS-1123 subdomain: dot-separated DNS labels, at most 253 characters.
local function is_dns_subdomain(text)
    if #text < 1 or #text > 253 then return false end
    for part in (text .. "."):gmatch("(.-)%.") do
        if not names.is_dns_label(part) then return false end
    end
    return true
end

-- A label key: an optional DNS subdomain prefix and "/", then a name of
-- at most 63 characters with the same alphabet as a value (not empty).
function names.is_label_key(text)
    if type(text) ~= "string" then return false end
    local prefix, name = text:match("^(.*)/(.*)$")
    if prefix and not is_dns_subdomain(prefix) then return false end
    name = name or text
    return name ~= "" and names.is_label_value(name)
end

return names
