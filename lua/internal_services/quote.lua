-- Quotes untrusted text for a message. Request fields may be a megabyte
-- long; a message quoting one whole would bury the sentence around it (or
-- be cut where the condition's cap falls), so a long value is shown by its
-- head and its size.

local quote = {}

quote.MAX = 256

-- The first max bytes of text (all of it when shorter), backed off so that
-- no UTF-8 character is split (continuation bytes are 10xxxxxx).
function quote.head(text, max)
    if #text <= max then return text end
    local cut = max
    while cut > 0 and (text:byte(cut + 1) or 0) & 0xC0 == 0x80 do cut = cut - 1 end
    return text:sub(1, cut)
end

-- text as %q shows it when it has at most max bytes (default MAX), else
-- its first max bytes, quoted, then "... (N bytes)". The cut does not split
-- a UTF-8 character.
function quote.text(text, max)
    max = max or quote.MAX
    if #text <= max then return string.format("%q", text) end
    return string.format("%q... (%d bytes)", quote.head(text, max), #text)
end

return quote
