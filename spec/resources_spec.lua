local resources = require "internal_services.resources"

describe("resources", function()
    it("describes the resources the controller uses", function()
        assert.same({ group = "appstudio.redhat.com", version = "v1alpha1",
            resource = "internalrequests", kind = "InternalRequest" }, resources.internal_request)
        assert.same({ group = "appstudio.redhat.com", version = "v1alpha1",
            resource = "internalservicesconfigs", kind = "InternalServicesConfig" },
            resources.internal_services_config)
        assert.same({ group = "tekton.dev", version = "v1", resource = "pipelineruns",
            kind = "PipelineRun" }, resources.pipeline_run)
        assert.same({ group = "", version = "v1", resource = "events", kind = "Event" }, resources.event)
        assert.same({ group = "coordination.k8s.io", version = "v1", resource = "leases",
            kind = "Lease" }, resources.lease)
    end)

    it("keeps the on-cluster label, annotation and finalizer keys", function()
        assert.same({
            name = "internal-services.appstudio.openshift.io/name",
            namespace = "internal-services.appstudio.openshift.io/namespace",
            uid = "internal-services.appstudio.openshift.io/request-uid",
            type = "pipelines.appstudio.openshift.io/type",
        }, resources.labels)
        assert.are.equal("release", resources.pipeline_type)
        assert.are.equal("internal-services.appstudio.openshift.io/request", resources.annotations.request)
        assert.are.equal("internal-services.appstudio.openshift.io/request-uid", resources.annotations.remote_uid)
        assert.are.equal("internal-services.appstudio.openshift.io/pipelinerun-cleanup", resources.finalizer)
        assert.are.equal("config", resources.config_name)
    end)

    it("writes apiVersion with and without a group", function()
        assert.are.equal("tekton.dev/v1", resources.api_version(resources.pipeline_run))
        assert.are.equal("v1", resources.api_version(resources.event))
        assert.are.equal("appstudio.redhat.com/v1alpha1", resources.api_version(resources.internal_request))
    end)

    it("keys objects as namespace/name and splits keys back", function()
        assert.are.equal("tenant-a/basic", resources.key({ metadata = { namespace = "tenant-a", name = "basic" } }))
        assert.are.equal("node-1", resources.key({ metadata = { name = "node-1" } }))
        local namespace, name = resources.split_key("tenant-a/basic")
        assert.are.equal("tenant-a", namespace)
        assert.are.equal("basic", name)
        namespace, name = resources.split_key("node-1")
        assert.is_nil(namespace)
        assert.are.equal("node-1", name)
    end)
end)
