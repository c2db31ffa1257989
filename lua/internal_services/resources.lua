-- The API resources the controller touches and the label, annotation and
-- finalizer keys it writes. These strings are the on-cluster contract with
-- earlier releases and with tooling that selects PipelineRuns by label.

local resources = {}

resources.internal_request = {
    group = "appstudio.redhat.com", version = "v1alpha1", resource = "internalrequests",
    kind = "InternalRequest",
}
resources.internal_services_config = {
    group = "appstudio.redhat.com", version = "v1alpha1", resource = "internalservicesconfigs",
    kind = "InternalServicesConfig",
}
resources.pipeline_run = {
    group = "tekton.dev", version = "v1", resource = "pipelineruns",
    kind = "PipelineRun",
}
resources.task_run = {
    group = "tekton.dev", version = "v1", resource = "taskruns",
    kind = "TaskRun",
}
resources.event = { group = "", version = "v1", resource = "events", kind = "Event" }
resources.lease = {
    group = "coordination.k8s.io", version = "v1", resource = "leases",
    kind = "Lease",
}

local PREFIX = "internal-services.appstudio.openshift.io/"
resources.prefix = PREFIX

resources.labels = {
    name = PREFIX .. "name",
    namespace = PREFIX .. "namespace",
    uid = PREFIX .. "request-uid",
    type = "pipelines.appstudio.openshift.io/type",
}
resources.pipeline_type = "release"

resources.annotations = {
    -- "namespace/name" of the InternalRequest on the remote cluster.
    request = PREFIX .. "request",
    remote_uid = PREFIX .. "request-uid",
    -- Written by operator-lib's owner annotations in the existing Go
    -- controller, and read by tools keyed on them: "namespace/name" and
    -- "Kind.group" of the request.
    primary_resource = "operator-sdk/primary-resource",
    primary_resource_type = "operator-sdk/primary-resource-type",
}
resources.primary_resource_type = "InternalRequest.appstudio.redhat.com"

-- Labels a request cannot set on its PipelineRun: they tell which request
-- the run belongs to, and what it is.
resources.system_labels = {
    [resources.labels.name] = true,
    [resources.labels.namespace] = true,
    [resources.labels.uid] = true,
    [resources.labels.type] = true,
}

resources.finalizer = PREFIX .. "pipelinerun-cleanup"

-- True for a finalizer this controller, or the controller it replaces,
-- put on a request: any finalizer in the controller's own domain. Cleanup
-- removes them all, so a request the previous controller held is never
-- left undeletable.
function resources.is_own_finalizer(value)
    return type(value) == "string" and value:sub(1, #PREFIX) == PREFIX
end

-- The InternalServicesConfig the controller reads, in its own namespace.
resources.config_name = "config"

-- "apiVersion" of a descriptor: "v1" for the core group, else "group/v".
function resources.api_version(res)
    if res.group == nil or res.group == "" then return res.version end
    return res.group .. "/" .. res.version
end

-- Cache and work-queue key of an object: "namespace/name", or "name" for a
-- cluster-scoped one.
function resources.key(obj)
    local meta = obj.metadata or {}
    if meta.namespace == nil or meta.namespace == "" then return meta.name end
    return meta.namespace .. "/" .. meta.name
end

-- Inverse of key(): namespace (nil when cluster-scoped) and name.
function resources.split_key(key)
    local namespace, name = key:match("^([^/]*)/(.*)$")
    if not namespace then return nil, key end
    return namespace, name
end

return resources
