-- Reconciles per second of the real reconciler (lua/internal_services/
-- reconciler.lua) over the in-memory two-cluster world of the specs
-- (spec/support/world.lua: fake API server, cache, shipped policies,
-- events), for the whole lifecycle of N requests, phase by phase:
--
--   start     a new request: policies, PipelineRun created, finalizer,
--             status Running, Accepted and Started events
--   follow    the PipelineRun changed (Tekton started it): nothing to do
--   complete  the PipelineRun succeeded with results: status Succeeded with
--             the results copied, PipelineRun deleted, finalizer removed
--   settle    the PipelineRun's delete event: the request is finished
--   gone      the user deleted the request: NotFound, nothing left
--
-- Plus Lua memory: live heap (after a full collection) per request in
-- flight once all N are Running, and bytes allocated per reconcile.
--
-- The figures include the fake API server's work (JSON encode/decode of
-- every call, deep copies, the store): in production that part is the C
-- host and the network. The store also holds the objects the real
-- controller would hold in its C informer caches, not in Lua.
--
-- Run from the repository root:  lua5.4 bench/bench_reconcile.lua [N]
package.path = "lua/?.lua;./?.lua;" .. package.path

local world = require "spec.support.world"
local fixtures = require "spec.support.fixtures"
local names = require "internal_services.names"
local resources = require "internal_services.resources"

local N = tonumber(arg and arg[1]) or 2000
assert(N and N >= 1 and math.type(N) == "integer", "N must be a positive integer")

local w = world.new()
-- The spec API records every call for assertions; a benchmark has none,
-- and the log would grow without bound.
w.api.calls = setmetatable({}, { __newindex = function() end })

-- Time spent inside the fake API server, to tell its cost from the
-- controller's own.
local api_seconds = 0
do
    local handle = w.api.handle
    w.api.handle = function(self, cluster, verb, req)
        local t0 = os.clock()
        local resp = handle(self, cluster, verb, req)
        api_seconds = api_seconds + os.clock() - t0
        return resp
    end
end

local template = fixtures.load("requests/basic.json")
local results = fixtures.load("pipelineruns/succeeded.json").status.results

local function kib()
    collectgarbage("collect")
    collectgarbage("collect")
    return collectgarbage("count")
end

local function figure(name, value, unit)
    print(string.format("FIGURE %s %.6g %s", name, value, unit))
end

local keys, refs = {}, {}
local mem_before = kib()
for i = 1, N do
    local r = {}
    for k, v in pairs(template) do r[k] = v end
    r.metadata = { name = string.format("release-%06d-push", i), namespace = "tenant-a",
                   labels = template.metadata.labels, generation = 1 }
    keys[i] = w:add_request(r)
end
local mem_stored = kib()

local timings = {}
local function phase(name, fn)
    local t0, api0 = os.clock(), api_seconds
    for i = 1, N do fn(i) end
    local dt = os.clock() - t0
    timings[#timings + 1] = { name = name, seconds = dt, api = api_seconds - api0 }
    return dt
end

local function expect(cond, what)
    if not cond then error("bench_reconcile: " .. what, 2) end
end

phase("start", function(i)
    local r = w:reconcile(keys[i])
    expect(type(r) == "table" and r.requeue_after, "start did not requeue")
    refs[i] = world.NAMESPACE .. "/" .. names.pipelinerun(w:request(keys[i]))
end)
local mem_running = kib()

-- Tekton picks the runs up: status changes, reconciles that find nothing to do.
for i = 1, N do
    local pr = w:pipelinerun(refs[i])
    pr.status = { startTime = "2026-11-23T10:00:05Z",
                  conditions = { { type = "Succeeded", status = "Unknown", reason = "Running" } } }
    w.api:put("internal", resources.pipeline_run, pr)
end
phase("follow", function(i) w:reconcile(keys[i]) end)

w.clock = w.clock + 271
for i = 1, N do
    w:finish_pipelinerun(refs[i], "True", "Succeeded",
        "Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0", results)
end
phase("complete", function(i)
    expect(w:reconcile(keys[i]) == nil, "complete returned a requeue")
    expect(w:pipelinerun(refs[i]) == nil, "PipelineRun left behind")
end)
phase("settle", function(i) w:reconcile(keys[i]) end)
for i = 1, N do
    local req = w:request(keys[i])
    expect(req.status.results and req.status.results.digest, "results not copied")
    w:delete_request(keys[i])
end
phase("gone", function(i) expect(w:reconcile(keys[i]) == nil, "reconcile of a deleted request") end)

-- Allocation churn of one reconcile, with the collector held off.
local function churn(fn, count)
    collectgarbage("collect")
    collectgarbage("stop")
    local before = collectgarbage("count")
    for i = 1, count do fn(i) end
    local after = collectgarbage("count")
    collectgarbage("restart")
    return (after - before) * 1024 / count
end
local sample = math.min(N, 200)
local w2 = world.new()
w2.api.calls = setmetatable({}, { __newindex = function() end })
local churn_keys = {}
for i = 1, sample do
    local r = {}
    for k, v in pairs(template) do r[k] = v end
    r.metadata = { name = string.format("churn-%06d", i), namespace = "tenant-a", generation = 1 }
    churn_keys[i] = w2:add_request(r)
end
local start_churn = churn(function(i) w2:reconcile(churn_keys[i]) end, sample)
local follow_churn = churn(function(i) w2:reconcile(churn_keys[i]) end, sample)

local total = 0
print(string.format("reconciler over the in-memory world: %d requests, full lifecycle", N))
for _, t in ipairs(timings) do
    total = total + t.seconds
    print(string.format("  %-9s %8.0f reconciles/s  (%.3f s CPU, %2.0f%% of it in the fake API server)",
        t.name, N / t.seconds, t.seconds, 100 * t.api / t.seconds))
end
local overall = 5 * N / total
print(string.format("  all       %8.0f reconciles/s, %.0f full request lifecycles/s", overall, N / total))
local per_flight = (mem_running - mem_stored) * 1024 / N
print(string.format("  Lua heap: %.1f MiB empty world, +%.0f B per stored request, +%.0f B per request in flight "
    .. "(its PipelineRun, Events and status in the fake store)", mem_before / 1024,
    (mem_stored - mem_before) * 1024 / N, per_flight))
print(string.format("  allocated per reconcile (garbage, fake API included): start %.0f KiB, follow %.0f KiB",
    start_churn / 1024, follow_churn / 1024))
figure("reconcile_per_s", overall, "reconciles/s")
figure("reconcile_start_per_s", N / timings[1].seconds, "reconciles/s")
figure("reconcile_lua_bytes_per_inflight", per_flight, "B")
figure("reconcile_alloc_per_start", start_churn, "B")
