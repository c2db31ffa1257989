-- Both clusters in memory for reconciler specs: the fake API server, a
-- cache reading it, a clock, the shipped policies, an events emitter and a
-- reconciler wired to all of them, plus helpers that play the user (create
-- and delete requests, edit the config) and Tekton (finish a PipelineRun).
local fake_api = require "spec.support.fake_api"
local fixtures = require "spec.support.fixtures"
local kube = require "internal_services.kube"
local events = require "internal_services.events"
local policy = require "internal_services.policy"
local reconciler = require "internal_services.reconciler"
local resources = require "internal_services.resources"

local world = {}

world.T0 = 1795428000 -- 2026-11-23T10:00:00Z
world.NAMESPACE = "internal-services"

local REQUEST = resources.internal_request
local CONFIG = resources.internal_services_config
local PIPELINE_RUN = resources.pipeline_run

local function split(key)
    return key:match("^(.-)/(.+)$")
end

local function read(path)
    local f = assert(io.open(path, "rb"))
    local text = f:read("a")
    f:close()
    return text
end

-- The policy scripts shipped in policies/ (not the optional ones).
function world.shipped_policies()
    local scripts = {}
    for _, name in ipairs({ "allowlist.lua", "git_url.lua" }) do
        scripts[#scripts + 1] = { name = name, source = read(fixtures.root .. "/../../policies/" .. name) }
    end
    return scripts
end

local World = {}
World.__index = World

-- opts: policies (scripts; default the shipped ones), config (fixture path
-- under configs/, a table, or false for none; default "configs/default.json"),
-- metrics (internal_services.metrics), plus any reconciler deps to override.
function world.new(opts)
    opts = opts or {}
    local w = setmetatable({ clock = world.T0, logs = {} }, World)
    local now = function() return w.clock end
    w.api = fake_api.new({ now = now })
    w.kube = kube.new(w.api.raw)
    w.cache = w.api:cache({
        requests = { "remote", REQUEST },
        config = { "internal", CONFIG },
        pipelineruns = { "internal", PIPELINE_RUN },
    })
    w.log = function(level, msg, fields) w.logs[#w.logs + 1] = { level = level, msg = msg, fields = fields } end
    w.policies = policy.new({ log = w.log, namespace = world.NAMESPACE })
    assert(w.policies:load(opts.policies or world.shipped_policies()))
    local config = opts.config
    if config == nil then config = "configs/default.json" end
    if config then w:set_config(config) end
    local deps = {
        kube = w.kube,
        cache = w.cache,
        policies = w.policies,
        events = events.new({ kube = w.kube, now = now, log = w.log, instance = "spec" }),
        log = w.log,
        now = now,
        namespace = world.NAMESPACE,
        remote = "remote",
        internal = "internal",
        deadline_grace = 60,
        default_timeout = 3600,
        resync = 300,
    }
    for k, v in pairs(opts) do
        if deps[k] ~= nil and k ~= "policies" then deps[k] = v end
    end
    deps.metrics = opts.metrics
    w.r = reconciler.new(deps)
    return w
end

function World:set_config(config)
    if type(config) == "string" then config = fixtures.load(config) end
    return self.api:put("internal", CONFIG, config)
end

function World:delete_config()
    self.api:remove("internal", CONFIG, world.NAMESPACE, resources.config_name)
end

-- Stores a request (fixture path under requests/ or a table) and returns
-- its key.
function World:add_request(request)
    if type(request) == "string" then request = fixtures.load(request) end
    local stored = self.api:put("remote", REQUEST, request)
    return stored.metadata.namespace .. "/" .. stored.metadata.name
end

function World:request(key)
    local ns, name = split(key)
    return self.api:object("remote", REQUEST, ns, name)
end

-- The user deletes the request (held by finalizers, if any).
function World:delete_request(key)
    local ns, name = split(key)
    return self.kube:delete("remote", REQUEST, ns, name)
end

function World:reconcile(key)
    return self.r:reconcile(key)
end

function World:pipelineruns()
    return self.api:objects("internal", PIPELINE_RUN)
end

function World:pipelinerun(ref)
    local ns, name = split(ref)
    return self.api:object("internal", PIPELINE_RUN, ns, name)
end

-- Someone deletes a PipelineRun behind the controller's back.
function World:delete_pipelinerun(ref)
    local ns, name = split(ref)
    self.api:remove("internal", PIPELINE_RUN, ns, name)
end

-- Plays Tekton: finishes the PipelineRun with the Succeeded condition
-- status ("True"/"False"), reason, message and results ({name, value}).
function World:finish_pipelinerun(ref, status, reason, message, results)
    local pr = assert(self:pipelinerun(ref), "no PipelineRun " .. ref)
    pr.status = pr.status or {}
    pr.status.conditions = { {
        type = "Succeeded", status = status, reason = reason, message = message,
        lastTransitionTime = os.date("!%Y-%m-%dT%H:%M:%SZ", self.clock),
    } }
    pr.status.completionTime = os.date("!%Y-%m-%dT%H:%M:%SZ", self.clock)
    pr.status.results = results
    self.api:put("internal", PIPELINE_RUN, pr)
end

-- Reasons of the Events recorded on the remote cluster, in order.
function World:event_reasons()
    local list = self.api:objects("remote", resources.event)
    table.sort(list, function(a, b) return a.metadata.name < b.metadata.name end)
    local out = {}
    for i, e in ipairs(list) do out[i] = e.reason end
    return out
end

-- True when the reconciler logged a line with this message.
function World:logged(msg)
    for _, l in ipairs(self.logs) do
        if l.msg == msg then return true end
    end
    return false
end

function World:events_with(reason)
    local out = {}
    for _, e in ipairs(self.api:objects("remote", resources.event)) do
        if e.reason == reason then out[#out + 1] = e end
    end
    return out
end

return world
