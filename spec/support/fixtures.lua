-- Shared loader for the JSON fixtures under tests/fixtures/, which the C
-- tests read too. Paths are relative to tests/fixtures/ and resolved from
-- this file's own location, so specs work whatever directory busted runs in.
local cjson = require "cjson"

local fixtures = {}

local function repo_root()
    local source = debug.getinfo(1, "S").source
    if source:sub(1, 1) == "@" then
        local dir = source:sub(2):match("^(.*)/spec/support/[^/]+$")
        if dir then return dir end
        -- Loaded as "spec/support/fixtures.lua" relative to the root.
        if source:sub(2):match("^spec/support/") then return "." end
    end
    return "."
end

fixtures.root = repo_root() .. "/tests/fixtures"

-- Raw text of tests/fixtures/<path>; errors name the file.
function fixtures.read(path)
    local full = fixtures.root .. "/" .. path
    local f, err = io.open(full, "rb")
    if not f then error("fixture " .. path .. ": " .. tostring(err), 2) end
    local text = f:read("a")
    f:close()
    return text
end

-- Decoded JSON of tests/fixtures/<path>. Where the installed cjson can
-- mark decoded arrays, empty ones keep that mark so they re-encode as [].
function fixtures.load(path)
    local text = fixtures.read(path)
    if cjson.decode_array_with_array_mt then cjson.decode_array_with_array_mt(true) end
    local ok, value = pcall(cjson.decode, text)
    if not ok then error("fixture " .. path .. ": " .. tostring(value), 2) end
    return value
end

-- Names of the files directly under tests/fixtures/<dir>, sorted.
function fixtures.list(dir)
    local names = {}
    local p = io.popen('ls -1 "' .. fixtures.root .. "/" .. dir .. '" 2>/dev/null')
    if p then
        for line in p:lines() do names[#names + 1] = line end
        p:close()
    end
    table.sort(names)
    return names
end

return fixtures
