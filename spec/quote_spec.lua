local quote = require "internal_services.quote"

describe("quote.text", function()
    it("quotes short text as %q does", function()
        assert.are.equal('"a\\"b"', quote.text('a"b'))
        assert.are.equal(string.format("%q", string.rep("x", quote.MAX)), quote.text(string.rep("x", quote.MAX)))
    end)

    it("shows long text by its head and its size", function()
        assert.are.equal('"kkkk"... (102400 bytes)', quote.text(string.rep("k", 102400), 4))
    end)

    it("does not split a character", function()
        local text = "a" .. string.rep("\195\169", 10)
        assert.are.equal('"a\195\169"... (21 bytes)', quote.text(text, 4))
    end)
end)
