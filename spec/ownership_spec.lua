local ownership = require "internal_services.ownership"
local resources = require "internal_services.resources"
local fixtures = require "support.fixtures"

describe("ownership", function()
    local request, legacy, ours

    before_each(function()
        request = fixtures.load("requests/legacy-running.json")
        legacy = fixtures.load("pipelineruns/legacy-running.json")
        ours = fixtures.load("pipelineruns/running.json")
    end)

    it("tells the previous controller's runs from ours", function()
        assert.is_true(ownership.is_legacy(legacy))
        assert.is_false(ownership.is_legacy(ours))
        assert.is_false(ownership.is_legacy({ metadata = { name = "unrelated" } }))
    end)

    it("names the request by our request annotation first: a name label holds 63 characters", function()
        local long = string.rep("n", 100)
        ours.metadata.labels[resources.labels.name] = string.rep("n", 63)
        ours.metadata.annotations[resources.annotations.request] = "tenant-a/" .. long
        assert.equal("tenant-a/" .. long, ownership.request_key(ours))
    end)

    it("names the request by labels, else by an InternalRequest owner annotation", function()
        assert.equal("tenant-a/legacy-running", ownership.request_key(legacy))
        legacy.metadata.labels = { other = "x" }
        assert.equal("tenant-a/legacy-running", ownership.request_key(legacy))
        legacy.metadata.annotations[resources.annotations.primary_resource_type] = "Release.appstudio.redhat.com"
        assert.is_nil(ownership.request_key(legacy))
        assert.is_nil(ownership.request_key({ metadata = { annotations = {
            [resources.annotations.primary_resource] = "no-slash",
            [resources.annotations.primary_resource_type] = resources.primary_resource_type } } }))
    end)

    it("settles our runs by uid", function()
        local basic = fixtures.load("requests/basic.json")
        assert.is_true(ownership.belongs(basic, ours))
        basic.metadata.uid = "another"
        assert.is_false(ownership.belongs(basic, ours))
    end)

    it("takes a legacy run for the request it names, unless it predates the request", function()
        assert.is_true(ownership.belongs(request, legacy))
        request.metadata.name = "other"
        assert.is_false(ownership.belongs(request, legacy))
        request.metadata.name = "legacy-running"
        legacy.metadata.creationTimestamp = "2026-11-23T09:58:11Z"
        assert.is_false(ownership.belongs(request, legacy))
        legacy.metadata.creationTimestamp = "2026-11-23T09:58:12Z"
        assert.is_true(ownership.belongs(request, legacy))
    end)

    it("picks the oldest legacy run of the request, ignoring ours and others'", function()
        local second = fixtures.load("pipelineruns/legacy-running.json")
        second.metadata.name = "internalrequest-aaaaa"
        second.metadata.creationTimestamp = "2026-11-23T09:59:00Z"
        local stranger = fixtures.load("pipelineruns/legacy-running.json")
        stranger.metadata.name = "internalrequest-00000"
        stranger.metadata.labels[resources.labels.name] = "someone"
        stranger.metadata.annotations[resources.annotations.primary_resource] = "tenant-a/someone"
        assert.equal("internalrequest-7xk2p", ownership.legacy_of(request, { second, ours, stranger, legacy }).metadata.name)
        assert.is_nil(ownership.legacy_of(request, { ours, stranger }))
    end)

    it("selects by the request's name and namespace labels", function()
        assert.equal("internal-services.appstudio.openshift.io/name=legacy-running,"
            .. "internal-services.appstudio.openshift.io/namespace=tenant-a", ownership.selector(request))
    end)
end)
