-- Example: bounds on the Pipeline parameters a request passes (spec.params),
-- so one request cannot hand a Pipeline an unbounded amount of data. Both
-- shapes are accepted: a map of name to value, or a list of {name, value}.
local MAX_PARAMS = 16
local MAX_VALUE_BYTES = 4096

return function(request)
    local params = request.spec and request.spec.params
    if params == nil then
        return true
    end
    local count = 0
    for key, entry in pairs(params) do
        local name, value = key, entry
        if math.type(key) == "integer" then -- list form
            name, value = entry.name, entry.value
        end
        count = count + 1
        if count > MAX_PARAMS then
            return false, ("at most %d params are allowed"):format(MAX_PARAMS)
        end
        if type(value) == "string" and #value > MAX_VALUE_BYTES then
            return false, ("param %q is %d bytes long; the limit is %d"):format(
                tostring(name), #value, MAX_VALUE_BYTES)
        end
    end
    return true
end
