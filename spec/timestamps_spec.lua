local timestamps = require "internal_services.timestamps"

describe("timestamps.parse", function()
    it("reads RFC 3339 in UTC, with fractions and with offsets", function()
        assert.equal(1795428000, timestamps.parse("2026-11-23T10:00:00Z"))
        assert.equal(1795428000.25, timestamps.parse("2026-11-23T10:00:00.25Z"))
        assert.equal(1795428000, timestamps.parse("2026-11-23T05:30:00-04:30"))
        assert.equal(951782400, timestamps.parse("2000-02-29T00:00:00Z"))
    end)

    it("is nil for anything else", function()
        for _, bad in ipairs { "2026-11-23", "2026-11-23T10:00:00", "2026-11-23T10:00:00+0200", 5, nil } do
            assert.is_nil(timestamps.parse(bad), tostring(bad))
        end
    end)
end)
