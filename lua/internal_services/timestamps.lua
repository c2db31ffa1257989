-- RFC 3339 timestamps as Kubernetes writes them, read as epoch seconds.

local timestamps = {}

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
function timestamps.parse(text)
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

return timestamps
