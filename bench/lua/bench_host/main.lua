-- Main module of bench_lua_host: declares one queue whose reconcile stands
-- in for a real one: it decodes an InternalRequest, then yields on
-- host.sleep a few times (as the reconciler yields on each API call) and
-- touches its state after each wake-up, so the decoded request stays live
-- for the whole reconcile. start() enqueues every key at once; the queue's
-- max_active lets all of them be in flight together.
--
-- The C program puts its parameters in package.loaded["bench_host.params"]:
-- inflight, sleeps, sleep_seconds, request (JSON text).
local cjson = require "cjson"
local host = require "host"
local params = require "bench_host.params"

local main = {}

main.QUEUE = "bench"

local function reconcile(key)
    local request = cjson.decode(params.request)
    request.metadata.name = key
    local seen = 0
    for _ = 1, params.sleeps do
        host.sleep(params.sleep_seconds)
        seen = seen + #request.metadata.name
    end
    if seen ~= params.sleeps * #key then
        return false, "state lost across yields"
    end
end

function main.start()
    host.queue({ name = main.QUEUE, reconcile = reconcile, max_active = params.inflight })
    for i = 1, params.inflight do
        host.enqueue(main.QUEUE, string.format("tenant-%d/release-%06d-push", i % 40, i))
    end
end

return main
