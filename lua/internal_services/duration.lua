-- Go duration strings (time.ParseDuration), the format of Tekton's
-- spec.timeouts: "1h30m", "1.5h", "300ms", "0". Negative durations parse in
-- Go but mean nothing as a timeout, so they are an error here.

local quote = require "internal_services.quote"

local duration = {}

-- Seconds per unit. "µs" is U+00B5 (micro sign), "μs" U+03BC (Greek mu);
-- Go accepts both.
local UNITS = {
    ns = 1e-9,
    us = 1e-6,
    ["\194\181s"] = 1e-6,
    ["\206\188s"] = 1e-6,
    ms = 1e-3,
    s = 1,
    m = 60,
    h = 3600,
}

-- Go's time.Duration is an int64 of nanoseconds: ParseDuration refuses
-- anything longer, and so does every Tekton process decoding the
-- PipelineRun, which would then not see it at all (its informer cannot
-- list the PipelineRuns while one fails to decode).
duration.MAX_SECONDS = 9223372036.854775807

local function fail(text, why)
    return nil, string.format("invalid duration %s: %s", quote.text(text), why)
end

-- Returns the duration in seconds (an integer when it is whole), or nil and
-- a sentence saying what is wrong.
function duration.parse(text)
    if type(text) ~= "string" then
        return nil, "invalid duration: expected a string, got " .. type(text)
    end
    if text == "" then return fail(text, "empty") end
    local rest = text
    local sign = rest:sub(1, 1)
    if sign == "-" or sign == "+" then rest = rest:sub(2) end
    if rest == "0" then return 0 end
    if rest == "" then return fail(text, "no number") end

    local total = 0
    local pos = 1
    while pos <= #rest do
        local whole, frac, after = rest:match("^(%d*)%.?(%d*)()", pos)
        local dotted = rest:sub(pos + #whole, pos + #whole) == "."
        if whole == "" and frac == "" then
            return fail(text, "expected a number at position " .. (pos + #text - #rest))
        end
        local unit = rest:match("^[^%d.]+", after)
        if not unit then
            return fail(text, "missing unit after " .. whole .. (dotted and "." or "") .. frac)
        end
        local scale = UNITS[unit]
        if not scale then return fail(text, "unknown unit " .. string.format("%q", unit)) end
        total = total + tonumber((whole == "" and "0" or whole) .. "." .. (frac == "" and "0" or frac)) * scale
        pos = after + #unit
    end
    if total > duration.MAX_SECONDS then
        return fail(text, "out of range (the longest duration is 2562047h47m16.854775807s)")
    end
    -- "-0s" is zero, which Go allows; anything below zero is refused.
    if sign == "-" and total ~= 0 then
        return fail(text, "negative durations are not allowed")
    end
    return math.tointeger(total) or total
end

-- Formats seconds the way Go prints a time.Duration ("1h30m0s", "300ms").
-- Only used in messages, so sub-millisecond parts are rounded.
function duration.format(seconds)
    if seconds == 0 then return "0s" end
    if seconds < 1 then
        return string.format("%gms", math.floor(seconds * 1e3 + 0.5))
    end
    local h = math.floor(seconds / 3600)
    local m = math.floor((seconds % 3600) / 60)
    local s = seconds - h * 3600 - m * 60
    local out = string.format("%gs", s)
    if h > 0 then return string.format("%dh%dm", h, m) .. out end
    if m > 0 then return string.format("%dm", m) .. out end
    return out
end

return duration
