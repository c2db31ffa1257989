local cjson = require "cjson"
local kube = require "internal_services.kube"
local fake_api = require "spec.support.fake_api"

local PR = { group = "tekton.dev", version = "v1", resource = "pipelineruns" }

describe("kube.encode", function()
    it("keeps empty arrays marked with kube.array as []", function()
        assert.equal('{"finalizers":[],"labels":{}}',
            kube.encode({ finalizers = kube.array(), labels = {} }))
    end)

    it("encodes sequences as arrays and sorts object keys", function()
        assert.equal('{"a":[1,2,{"x":"y"}],"b":true,"c":null}',
            kube.encode({ c = cjson.null, b = true, a = { 1, 2, { x = "y" } } }))
    end)

    it("writes integers exactly, beyond 14 significant digits", function()
        assert.equal("[9007199254740993,0.5]", kube.encode({ 9007199254740993, 0.5 }))
    end)

    it("passes strings through as already encoded bodies", function()
        assert.equal('{"spec":{}}', kube.encode('{"spec":{}}'))
    end)

    it("refuses non-string object keys", function()
        assert.has_error(function() kube.encode({ [true] = 1 }) end,
            "kube.encode: object key true is not a string")
    end)
end)

describe("kube client", function()
    local calls, answer, client

    before_each(function()
        calls = {}
        answer = { code = 200, body = '{"kind":"PipelineRun","metadata":{"name":"a"}}' }
        client = kube.new(function(cluster, verb, req)
            calls[#calls + 1] = { cluster = cluster, verb = verb, req = req }
            return answer
        end)
    end)

    it("builds the host request for each verb", function()
        client:get("internal", PR, "ns", "a")
        client:list("internal", PR, "ns", { label_selector = "x" })
        client:create("internal", PR, "ns", { metadata = { name = "a" } })
        client:update("internal", PR, "ns", { metadata = { name = "a" } })
        client:update_status("internal", PR, "ns", { metadata = { name = "a" } })
        client:patch("internal", PR, "ns", "a", { spec = { status = "Cancelled" } })
        client:patch("internal", PR, "ns", "a", { { op = "remove", path = "/x" } }, "json", "status")
        client:delete("internal", PR, "ns", "a", { precondition_uid = "u" })
        local verbs = {}
        for i, call in ipairs(calls) do
            verbs[i] = call.verb
            assert.equal("internal", call.cluster)
            assert.equal("tekton.dev", call.req.group)
            assert.equal("pipelineruns", call.req.resource)
            assert.equal("ns", call.req.namespace)
        end
        assert.same({ "get", "list", "create", "update", "update_status", "patch", "patch", "delete" }, verbs)
        assert.equal("x", calls[2].req.label_selector)
        assert.is_nil(calls[3].req.name)
        assert.equal('{"metadata":{"name":"a"}}', calls[3].req.body)
        assert.equal("a", calls[4].req.name)
        assert.equal("status", calls[5].req.subresource)
        assert.equal("merge", calls[6].req.patch_type)
        assert.equal('{"spec":{"status":"Cancelled"}}', calls[6].req.body)
        assert.equal("json", calls[7].req.patch_type)
        assert.equal("status", calls[7].req.subresource)
        assert.equal('[{"op":"remove","path":"\\/x"}]', calls[7].req.body)
        assert.equal("u", calls[8].req.precondition_uid)
    end)

    it("decodes a successful body", function()
        local obj, err = client:get("internal", PR, "ns", "a")
        assert.is_nil(err)
        assert.equal("PipelineRun", obj.kind)
    end)

    it("returns the host's reason and message on failure", function()
        answer = { code = 409, body = "{}", reason = "AlreadyExists", message = "exists" }
        local obj, err = client:create("internal", PR, "ns", { metadata = { name = "a" } })
        assert.is_nil(obj)
        assert.same({ code = 409, reason = "AlreadyExists", message = "exists" },
            { code = err.code, reason = err.reason, message = err.message })
        assert.equal("AlreadyExists (409): exists", tostring(err))
    end)

    it("falls back to the Status body, then to the HTTP code", function()
        answer = { code = 403, body = '{"kind":"Status","reason":"Forbidden","message":"no"}' }
        local _, err = client:get("internal", PR, "ns", "a")
        assert.equal("Forbidden", err.reason)
        assert.equal("no", err.message)
        answer = { code = 404, body = "not json" }
        _, err = client:get("internal", PR, "ns", "a")
        assert.equal("NotFound", err.reason)
        assert.equal("HTTP 404", err.message)
        answer = { code = 0, body = "" }
        _, err = client:get("internal", PR, "ns", "a")
        assert.equal("TransportError", err.reason)
    end)

    it("reports a 2xx body that is not JSON", function()
        answer = { code = 200, body = "<html>" }
        local obj, err = client:get("internal", PR, "ns", "a")
        assert.is_nil(obj)
        assert.equal("InvalidResponse", err.reason)
    end)
end)

describe("kube client against the fake API server", function()
    local api, client

    before_each(function()
        api = fake_api.new({ now = function() return 1795428000 end })
        client = kube.new(api.raw)
    end)

    it("creates, conflicts, updates with optimistic concurrency and deletes", function()
        local created = assert(client:create("internal", PR, "ns", { metadata = { name = "a" }, spec = { x = 1 } }))
        assert.is_string(created.metadata.uid)
        local _, err = client:create("internal", PR, "ns", { metadata = { name = "a" } })
        assert.equal("AlreadyExists", err.reason)

        created.spec.x = 2
        local updated = assert(client:update("internal", PR, "ns", created))
        assert.equal(2, updated.metadata.generation)
        _, err = client:update("internal", PR, "ns", created)
        assert.equal("Conflict", err.reason)

        assert(client:delete("internal", PR, "ns", "a"))
        _, err = client:get("internal", PR, "ns", "a")
        assert.equal("NotFound", err.reason)
    end)

    it("applies JSON patches with a resourceVersion test", function()
        local obj = assert(client:create("internal", PR, "ns", { metadata = { name = "a" } }))
        local patched = assert(client:patch("internal", PR, "ns", "a", {
            { op = "test", path = "/metadata/resourceVersion", value = obj.metadata.resourceVersion },
            { op = "add", path = "/metadata/finalizers", value = kube.array { "f" } },
        }, "json"))
        assert.same({ "f" }, patched.metadata.finalizers)
        local _, err = client:patch("internal", PR, "ns", "a", {
            { op = "test", path = "/metadata/resourceVersion", value = obj.metadata.resourceVersion },
            { op = "remove", path = "/metadata/finalizers/0" },
        }, "json")
        assert.equal("Invalid", err.reason)
    end)

    it("lists by label selector", function()
        client:create("internal", PR, "ns", { metadata = { name = "a", labels = { owner = "x" } } })
        client:create("internal", PR, "ns", { metadata = { name = "b" } })
        local list = assert(client:list("internal", PR, "ns", { label_selector = "owner" }))
        assert.equal(1, #list.items)
        assert.equal("a", list.items[1].metadata.name)
    end)
end)
