-- Builds the Tekton v1 PipelineRun that executes an InternalRequest.
--
-- Everything in the request is untrusted input from another cluster, so
-- build() checks each field it uses and, when one is malformed, returns
-- nil and a sentence naming that field (it becomes the request's Failed
-- message). A request that passes produces the same PipelineRun every time,
-- which keeps re-creation after a lost response idempotent.

local cjson = require "cjson"
local names = require "internal_services.names"
local duration = require "internal_services.duration"
local resources = require "internal_services.resources"
local quote = require "internal_services.quote"

local pipelinerun = {}

pipelinerun.default_workspace = "workspace"
pipelinerun.default_storage = "1Gi"

local TIMEOUT_KEYS = { pipeline = true, tasks = true, finally = true }

-- cjson decodes JSON null as cjson.null; a null field is an absent field.
local function present(value)
    return value ~= nil and value ~= cjson.null
end

local function is_array(value)
    if type(value) ~= "table" then return false end
    local count = 0
    for key in pairs(value) do
        if math.type(key) ~= "integer" or key < 1 then return false end
        count = count + 1
    end
    return count == #value
end

local function is_object(value)
    if type(value) ~= "table" then return false end
    for key in pairs(value) do
        if type(key) ~= "string" then return false end
    end
    return true
end

local function json_type(value)
    if value == cjson.null then return "null" end
    if type(value) == "table" then return is_array(value) and next(value) and "array" or "object" end
    return type(value)
end

-- Kubernetes writes list positions 0-based in field paths.
local function at(path, index)
    return string.format("%s[%d]", path, index - 1)
end

-- A [{name, value}] list of string parameters. Returns the list copied, or
-- nil and an error.
local function string_params(list, path)
    if not present(list) then return {} end
    if not is_array(list) then return nil, path .. " must be a list of {name, value}" end
    local out, seen = {}, {}
    for i, param in ipairs(list) do
        local here = at(path, i)
        if type(param) ~= "table" then return nil, here .. " must be an object with name and value" end
        if type(param.name) ~= "string" or param.name == "" then
            return nil, here .. ".name must be a non-empty string"
        end
        if type(param.value) ~= "string" then
            return nil, string.format("%s.value (parameter %s) must be a string, got %s",
                here, quote.text(param.name), json_type(param.value))
        end
        if seen[param.name] then
            return nil, string.format("%s repeats parameter %s, first given at %s",
                here, quote.text(param.name), seen[param.name])
        end
        seen[param.name] = here
        out[#out + 1] = { name = param.name, value = param.value }
    end
    return out
end

-- Folds a setting given in two places of the request into one; the same
-- setting with two different values is ambiguous and refused.
local function merge(into, key, value, path)
    local prior = into[key]
    if prior and prior.value ~= value then
        return nil, string.format("%s (%s) conflicts with %s (%s)", path, quote.text(value),
            prior.path, quote.text(prior.value))
    end
    if not prior then into[key] = { value = value, path = path } end
    return true
end

pipelinerun.resolver_namespace_modes = { Controller = true, RequestNamespace = true }

-- The namespace the cluster resolver reads Pipelines from. By default the
-- controller's own: only Pipelines installed there may run. A config with
-- spec.clusterResolverNamespace "RequestNamespace" uses the namespace on
-- the internal cluster named like the request's own, as the existing Go
-- controller does; weaker, since whoever may create a namespace of that
-- name on the internal cluster decides what runs.
function pipelinerun.resolver_namespace(config, request, namespace)
    local spec = type(config) == "table" and type(config.spec) == "table" and config.spec or {}
    if spec.clusterResolverNamespace == "RequestNamespace" then return request.metadata.namespace end
    return namespace
end

-- Sets param name to value in params, in place where it is given, else
-- appended.
local function set_param(params, name, value)
    for _, param in ipairs(params) do
        if param.name == name then
            param.value = value
            return
        end
    end
    params[#params + 1] = { name = name, value = value }
end

local function pipeline_ref(spec, resolver_namespace)
    local pipeline = spec.pipeline
    if not present(pipeline) then return nil, "spec.pipeline is missing" end
    if type(pipeline) ~= "table" then return nil, "spec.pipeline must be an object" end
    local ref = pipeline.pipelineRef
    if not present(ref) then return nil, "spec.pipeline.pipelineRef is missing" end
    if type(ref) ~= "table" then return nil, "spec.pipeline.pipelineRef must be an object" end
    local resolver = ref.resolver
    if not present(resolver) or resolver == "" then
        return nil, "spec.pipeline.pipelineRef.resolver is missing"
    end
    if type(resolver) ~= "string" then
        return nil, "spec.pipeline.pipelineRef.resolver must be a string, got " .. json_type(resolver)
    end
    local params, err = string_params(ref.params, "spec.pipeline.pipelineRef.params")
    if not params then return nil, err end
    if resolver == "cluster" then
        -- Tekton's cluster resolver defaults kind to "task"; a request only
        -- ever runs a Pipeline, so kind is always sent, and any other kind
        -- asked for is refused rather than silently replaced.
        for i, param in ipairs(params) do
            if param.name == "kind" and param.value ~= "pipeline" then
                return nil, string.format("%s.value is %s: the cluster resolver only runs Pipelines here "
                    .. "(kind \"pipeline\")", at("spec.pipeline.pipelineRef.params", i), quote.text(param.value))
            end
        end
        set_param(params, "kind", "pipeline")
        -- The cluster resolver reads Pipelines from any namespace it can
        -- see; the request does not choose which.
        set_param(params, "namespace", resolver_namespace)
    end
    local out = { resolver = resolver }
    if #params > 0 then out.params = params end
    return out
end

local function pipeline_params(spec)
    local merged = {}
    if present(spec.params) then
        if not is_object(spec.params) then
            return nil, "spec.params must be an object of parameter names to string values"
        end
        for name, value in pairs(spec.params) do
            -- The schema allows any key; spec.pipeline.params refuses an
            -- empty name, and so does this.
            if name == "" then return nil, "spec.params has a parameter with an empty name" end
            local path = "spec.params." .. name
            if type(value) ~= "string" then
                return nil, string.format("%s must be a string, got %s", path, json_type(value))
            end
            local ok, err = merge(merged, name, value, path)
            if not ok then return nil, err end
        end
    end
    local pipeline = type(spec.pipeline) == "table" and spec.pipeline or {}
    local list, err = string_params(pipeline.params, "spec.pipeline.params")
    if not list then return nil, err end
    for i, param in ipairs(list) do
        local ok, merge_err = merge(merged, param.name, param.value, at("spec.pipeline.params", i))
        if not ok then return nil, merge_err end
    end
    local out = {}
    for name, entry in pairs(merged) do out[#out + 1] = { name = name, value = entry.value } end
    table.sort(out, function(a, b) return a.name < b.name end)
    return out
end

local function collect_timeouts(merged, timeouts, path)
    if not present(timeouts) then return true end
    if not is_object(timeouts) then return nil, path .. " must be an object" end
    for key, value in pairs(timeouts) do
        local here = path .. "." .. key
        if not TIMEOUT_KEYS[key] then
            return nil, here .. " is not a Tekton timeout (pipeline, tasks, finally)"
        end
        if type(value) ~= "string" then
            return nil, string.format("%s must be a duration string, got %s", here, json_type(value))
        end
        local seconds, err = duration.parse(value)
        if not seconds then return nil, here .. ": " .. err end
        local ok, merge_err = merge(merged, key, value, here)
        if not ok then return nil, merge_err end
        merged[key].seconds = seconds
    end
    return true
end

-- Tekton's admission webhook refuses tasks or finally timeouts that do not
-- fit in the pipeline timeout; saying so here names the request's field
-- instead of surfacing a webhook error. Zero means "no timeout".
local function check_timeout_budget(merged)
    local pipeline = merged.pipeline
    if not pipeline or pipeline.seconds == 0 then return true end
    local function limit(entry) return entry and (entry.seconds == 0 and math.huge or entry.seconds) or 0 end
    for _, key in ipairs { "tasks", "finally" } do
        if limit(merged[key]) > pipeline.seconds then
            return nil, string.format("%s (%s) exceeds %s (%s)",
                merged[key].path, quote.text(merged[key].value), pipeline.path, quote.text(pipeline.value))
        end
    end
    if merged.tasks and merged.finally and limit(merged.tasks) + limit(merged.finally) > pipeline.seconds then
        return nil, string.format("%s (%s) plus %s (%s) exceeds %s (%s)",
            merged.tasks.path, quote.text(merged.tasks.value), merged.finally.path,
            quote.text(merged.finally.value), pipeline.path, quote.text(pipeline.value))
    end
    return true
end

local function timeouts(spec)
    local merged = {}
    local ok, err = collect_timeouts(merged, spec.timeouts, "spec.timeouts")
    if not ok then return nil, err end
    local pipeline = type(spec.pipeline) == "table" and spec.pipeline or {}
    ok, err = collect_timeouts(merged, pipeline.timeouts, "spec.pipeline.timeouts")
    if not ok then return nil, err end
    ok, err = check_timeout_budget(merged)
    if not ok then return nil, err end
    if next(merged) == nil then return false end
    local out = {}
    for key, entry in pairs(merged) do out[key] = entry.value end
    return out
end

local function service_account(spec)
    local merged = {}
    local pipeline = type(spec.pipeline) == "table" and spec.pipeline or {}
    for _, source in ipairs {
        { value = spec.serviceAccount, path = "spec.serviceAccount" },
        { value = pipeline.serviceAccountName, path = "spec.pipeline.serviceAccountName" },
    } do
        local value = source.value
        if present(value) and value ~= "" then
            if type(value) ~= "string" then
                return nil, string.format("%s must be a string, got %s", source.path, json_type(value))
            end
            if not names.is_dns_label(value) then
                return nil, string.format("%s %s is not a valid ServiceAccount name "
                    .. "(lowercase letters, digits and '-', at most 63 characters, "
                    .. "starting and ending with a letter or digit)", source.path, quote.text(value))
            end
            local ok, err = merge(merged, "sa", value, source.path)
            if not ok then return nil, err end
        end
    end
    return merged.sa and merged.sa.value or false
end

-- Every request label is copied (the release tooling keys PipelineRuns on
-- them), except the system labels, which always carry the request's own
-- identity so that a request cannot pose as another. A label that is not
-- valid on a PipelineRun is skipped and reported through warn.
local function labels(request, warn)
    local meta = request.metadata
    local out = {}
    if is_object(meta.labels) then
        local keys = {}
        for key in pairs(meta.labels) do keys[#keys + 1] = key end
        table.sort(keys)
        for _, key in ipairs(keys) do
            local value = meta.labels[key]
            if not resources.system_labels[key] then
                if names.is_label_key(key) and names.is_label_value(value) then
                    out[key] = value
                else
                    warn(key, value)
                end
            end
        end
    end
    out[resources.labels.name] = names.label_value(meta.name)
    out[resources.labels.namespace] = meta.namespace
    out[resources.labels.uid] = meta.uid
    out[resources.labels.type] = resources.pipeline_type
    return out
end

local function workspace(config)
    local spec = type(config) == "table" and type(config.spec) == "table" and config.spec or {}
    local claim = type(spec.volumeClaim) == "table" and spec.volumeClaim or {}
    local name = type(claim.name) == "string" and claim.name ~= "" and claim.name
        or pipelinerun.default_workspace
    local size = type(claim.size) == "string" and claim.size ~= "" and claim.size
        or pipelinerun.default_storage
    return {
        name = name,
        volumeClaimTemplate = {
            spec = {
                accessModes = { "ReadWriteOnce" },
                resources = { requests = { storage = size } },
            },
        },
    }
end

local function check_metadata(request)
    if type(request) ~= "table" or type(request.metadata) ~= "table" then
        return nil, "metadata is missing"
    end
    for _, field in ipairs { "namespace", "name", "uid" } do
        local value = request.metadata[field]
        if type(value) ~= "string" or value == "" then return nil, "metadata." .. field .. " is missing" end
    end
    return true
end

-- The PipelineRun for request, to be created in the controller's namespace
-- with config (an InternalServicesConfig, or nil for the defaults); or nil
-- and a sentence naming the malformed field. log (optional, host.log's
-- signature) hears of request labels left off the PipelineRun.
function pipelinerun.build(request, config, namespace, log)
    assert(type(namespace) == "string" and namespace ~= "", "pipelinerun.build: namespace required")
    local ok, err = check_metadata(request)
    if not ok then return nil, err end
    local spec = request.spec
    if not present(spec) then return nil, "spec is missing" end
    if type(spec) ~= "table" then return nil, "spec must be an object" end

    local ref, params, limits, account
    ref, err = pipeline_ref(spec, pipelinerun.resolver_namespace(config, request, namespace))
    if not ref then return nil, err end
    params, err = pipeline_params(spec)
    if not params then return nil, err end
    limits, err = timeouts(spec)
    if limits == nil then return nil, err end
    account, err = service_account(spec)
    if account == nil then return nil, err end

    local meta = request.metadata
    local run_spec = { pipelineRef = ref, workspaces = { workspace(config) } }
    if #params > 0 then run_spec.params = params end
    if limits then run_spec.timeouts = limits end
    if account then run_spec.taskRunTemplate = { serviceAccountName = account } end

    return {
        apiVersion = resources.api_version(resources.pipeline_run),
        kind = resources.pipeline_run.kind,
        metadata = {
            name = names.pipelinerun(request),
            namespace = namespace,
            labels = labels(request, function(key, value)
                if log then
                    log("warn", "request label is not valid on a PipelineRun; left off", {
                        request = meta.namespace .. "/" .. meta.name, label = tostring(key),
                        value = type(value) == "string" and value or json_type(value),
                    })
                end
            end),
            annotations = {
                [resources.annotations.request] = meta.namespace .. "/" .. meta.name,
                [resources.annotations.remote_uid] = meta.uid,
                [resources.annotations.primary_resource] = meta.namespace .. "/" .. meta.name,
                [resources.annotations.primary_resource_type] = resources.primary_resource_type,
            },
        },
        spec = run_spec,
    }
end

return pipelinerun
