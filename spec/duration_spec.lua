local duration = require "internal_services.duration"

describe("duration.parse", function()
    local valid = {
        { "1h", 3600 },
        { "1.5h", 5400 },
        { "300ms", 0.3 },
        { "1h2m3s", 3723 },
        { "10m0s", 600 },
        { "1h0m0s", 3600 },
        { "0", 0 },
        { "0s", 0 },
        { "-0s", 0 },
        { "+5m", 300 },
        { ".5s", 0.5 },
        { "1.s", 1 },
        { "2us", 2e-6 },
        { "2\194\181s", 2e-6 },
        { "2\206\188s", 2e-6 },
        { "1500ns", 1.5e-6 },
        { "1m30s", 90 },
        -- The longest Go's int64 nanoseconds hold, within a float's precision.
        { "2562047h47m16s", 9223372036 },
    }
    for _, case in ipairs(valid) do
        it(string.format("reads %q as %s seconds", case[1], case[2]), function()
            local seconds, err = duration.parse(case[1])
            assert.is_nil(err)
            assert.is_true(math.abs(seconds - case[2]) < 1e-12, tostring(seconds))
        end)
    end

    it("returns integers for whole seconds", function()
        assert.are.equal("integer", math.type(duration.parse("1h2m3s")))
    end)

    local invalid = {
        { "", "empty" },
        { "abc", "expected a number" },
        { "-1s", "negative durations are not allowed" },
        { "-1.5h", "negative durations are not allowed" },
        { "1", "missing unit" },
        { "1x", "unknown unit" },
        { "1h 2m", "unknown unit" },
        { ".s", "expected a number" },
        { "-", "no number" },
        { "h", "expected a number" },
        { "9999999999h", "out of range" },
        { "2562048h", "out of range" },
        { "2562047h48m", "out of range" },
        { "9223372037s", "out of range" },
    }
    for _, case in ipairs(invalid) do
        it(string.format("refuses %q", case[1]), function()
            local seconds, err = duration.parse(case[1])
            assert.is_nil(seconds)
            assert.matches(string.format("invalid duration %q", case[1]), err, 1, true)
            assert.matches(case[2], err, 1, true)
        end)
    end

    it("refuses non-strings", function()
        local seconds, err = duration.parse(30)
        assert.is_nil(seconds)
        assert.are.equal("invalid duration: expected a string, got number", err)
    end)
end)

describe("duration.format", function()
    it("prints like Go's time.Duration", function()
        assert.are.equal("1h30m0s", duration.format(5400))
        assert.are.equal("2m5s", duration.format(125))
        assert.are.equal("45s", duration.format(45))
        assert.are.equal("300ms", duration.format(0.3))
        assert.are.equal("0s", duration.format(0))
    end)

    it("round-trips with parse", function()
        for _, text in ipairs { "1h2m3s", "10m0s", "1.5s" } do
            assert.are.equal(duration.parse(text), duration.parse(duration.format(duration.parse(text))))
        end
    end)
end)
