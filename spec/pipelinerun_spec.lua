local pipelinerun = require "internal_services.pipelinerun"
local names = require "internal_services.names"
local resources = require "internal_services.resources"
local fixtures = require "support.fixtures"

local NAMESPACE = "internal-services"

local function param(list, name)
    for _, p in ipairs(list or {}) do
        if p.name == name then return p.value end
    end
    return nil
end

describe("pipelinerun.build", function()
    -- Each case: request fixture, config fixture (nil = no config), and the
    -- PipelineRun expected, written out from the templating rules.
    local cases = {
        { request = "basic", config = nil, expected = "basic" },
        { request = "cluster-other-namespace", config = "default", expected = "cluster-other-namespace" },
        { request = "git", config = "custom-volume", expected = "git" },
        { request = "pipeline-fields", config = "default", expected = "pipeline-fields" },
        { request = "long-name", config = "empty", expected = "long-name" },
    }
    for _, case in ipairs(cases) do
        it("templates requests/" .. case.request .. ".json with config " .. tostring(case.config), function()
            local request = fixtures.load("requests/" .. case.request .. ".json")
            local config = case.config and fixtures.load("configs/" .. case.config .. ".json")
            local pr, err = pipelinerun.build(request, config, NAMESPACE)
            assert.is_nil(err)
            assert.same(fixtures.load("expected/pipelinerun-" .. case.expected .. ".json"), pr)
        end)
    end

    it("covers every expected fixture in the table", function()
        local listed = {}
        for _, case in ipairs(cases) do listed["pipelinerun-" .. case.expected .. ".json"] = true end
        for _, file in ipairs(fixtures.list("expected")) do
            if file:match("^pipelinerun%-") then assert.is_true(listed[file], file) end
        end
    end)

    it("is deterministic", function()
        local request = fixtures.load("requests/git.json")
        local config = fixtures.load("configs/default.json")
        assert.same(pipelinerun.build(request, config, NAMESPACE), pipelinerun.build(request, config, NAMESPACE))
    end)

    it("leaves the request untouched", function()
        local request = fixtures.load("requests/cluster-other-namespace.json")
        pipelinerun.build(request, nil, NAMESPACE)
        assert.same(fixtures.load("requests/cluster-other-namespace.json"), request)
    end)

    it("names the PipelineRun with names.pipelinerun", function()
        local request = fixtures.load("requests/git.json")
        local pr = pipelinerun.build(request, nil, NAMESPACE)
        assert.are.equal(names.pipelinerun(request), pr.metadata.name)
        assert.are.equal(NAMESPACE, pr.metadata.namespace)
    end)

    describe("the cluster resolver", function()
        it("forces the namespace param to the controller namespace", function()
            local request = fixtures.load("requests/cluster-other-namespace.json")
            assert.are.equal("tenant-b", param(request.spec.pipeline.pipelineRef.params, "namespace"))
            local pr = pipelinerun.build(request, nil, "ops")
            assert.are.equal("ops", param(pr.spec.pipelineRef.params, "namespace"))
            local count = 0
            for _, p in ipairs(pr.spec.pipelineRef.params) do
                if p.name == "namespace" then count = count + 1 end
            end
            assert.are.equal(1, count)
        end)

        it("adds the namespace param when it is missing", function()
            local request = fixtures.load("requests/basic.json")
            assert.is_nil(param(request.spec.pipeline.pipelineRef.params, "namespace"))
            local pr = pipelinerun.build(request, nil, "ops")
            assert.are.equal("ops", param(pr.spec.pipelineRef.params, "namespace"))
        end)

        it("adds kind and namespace even when the request has no resolver params", function()
            local request = fixtures.load("requests/basic.json")
            request.spec.pipeline.pipelineRef.params = nil
            local pr = pipelinerun.build(request, nil, "ops")
            assert.same({ { name = "kind", value = "pipeline" }, { name = "namespace", value = "ops" } },
                pr.spec.pipelineRef.params)
        end)

        it("always sends kind=pipeline, which Tekton's resolver would default to task", function()
            local request = fixtures.load("requests/basic.json")
            request.spec.pipeline.pipelineRef.params = { { name = "name", value = "push-artifacts" } }
            local pr = pipelinerun.build(request, nil, "ops")
            assert.same({ { name = "name", value = "push-artifacts" }, { name = "kind", value = "pipeline" },
                { name = "namespace", value = "ops" } }, pr.spec.pipelineRef.params)
        end)

        it("refuses a request for another kind, naming the param", function()
            local request = fixtures.load("requests/basic.json")
            request.spec.pipeline.pipelineRef.params = {
                { name = "name", value = "push-artifacts" }, { name = "kind", value = "task" } }
            local pr, err = pipelinerun.build(request, nil, "ops")
            assert.is_nil(pr)
            assert.are.equal('spec.pipeline.pipelineRef.params[1].value is "task": '
                .. 'the cluster resolver only runs Pipelines here (kind "pipeline")', err)
        end)

        it("shows a long value by its head and size, and keeps the sentence readable", function()
            local request = fixtures.load("requests/basic.json")
            request.spec.pipeline.pipelineRef.params = {
                { name = "name", value = "push-artifacts" }, { name = "kind", value = string.rep("k", 102400) } }
            local pr, err = pipelinerun.build(request, nil, "ops")
            assert.is_nil(pr)
            assert.are.equal('spec.pipeline.pipelineRef.params[1].value is "' .. string.rep("k", 256)
                .. '"... (102400 bytes): the cluster resolver only runs Pipelines here (kind "pipeline")', err)
        end)

        it("uses the request's namespace name only when the config opts in", function()
            local request = fixtures.load("requests/cluster-other-namespace.json")
            local config = fixtures.load("configs/default.json")
            config.spec.clusterResolverNamespace = "RequestNamespace"
            local pr = pipelinerun.build(request, config, "ops")
            assert.are.equal("tenant-a", param(pr.spec.pipelineRef.params, "namespace"))
            config.spec.clusterResolverNamespace = "Controller"
            pr = pipelinerun.build(request, config, "ops")
            assert.are.equal("ops", param(pr.spec.pipelineRef.params, "namespace"))
            -- Anything else keeps the stricter default.
            config.spec.clusterResolverNamespace = "requestnamespace"
            pr = pipelinerun.build(request, config, "ops")
            assert.are.equal("ops", param(pr.spec.pipelineRef.params, "namespace"))
        end)

        it("does not touch other resolvers' namespace params", function()
            local request = fixtures.load("requests/git.json")
            table.insert(request.spec.pipeline.pipelineRef.params, { name = "namespace", value = "tenant-b" })
            local pr = pipelinerun.build(request, nil, "ops")
            assert.are.equal("tenant-b", param(pr.spec.pipelineRef.params, "namespace"))
        end)
    end)

    describe("labels", function()
        it("cannot override system labels from the request", function()
            local request = fixtures.load("requests/git.json")
            local pr = pipelinerun.build(request, nil, NAMESPACE)
            local labels = pr.metadata.labels
            assert.are.equal("push-to-registry", labels[resources.labels.name])
            assert.are.equal("tenant-b", labels[resources.labels.namespace])
            assert.are.equal(request.metadata.uid, labels[resources.labels.uid])
            assert.are.equal("release", labels[resources.labels.type])
            assert.are.equal("rel-7", labels["release.appstudio.openshift.io/name"])
        end)

        it("copies the request's other labels in the controller's domain", function()
            local request = fixtures.load("requests/git.json")
            request.metadata.labels["internal-services.appstudio.openshift.io/pipelinerun-uid"] = "0f1e2d3c"
            request.metadata.labels["internal-services.appstudio.openshift.io/pipeline-name"] = "push-to-registry"
            local labels = pipelinerun.build(request, nil, NAMESPACE).metadata.labels
            assert.are.equal("x", labels["internal-services.appstudio.openshift.io/extra"])
            assert.are.equal("0f1e2d3c", labels["internal-services.appstudio.openshift.io/pipelinerun-uid"])
            assert.are.equal("push-to-registry", labels["internal-services.appstudio.openshift.io/pipeline-name"])
        end)

        it("leaves off a label invalid on a PipelineRun, with a log line", function()
            local request = fixtures.load("requests/git.json")
            request.metadata.labels["bad key!"] = "v"
            request.metadata.labels["team"] = string.rep("a", 64)
            request.metadata.labels["count"] = 3
            local logs = {}
            local pr = pipelinerun.build(request, nil, NAMESPACE, function(level, msg, fields)
                logs[#logs + 1] = { level = level, msg = msg, fields = fields }
            end)
            assert.is_nil(pr.metadata.labels["bad key!"])
            assert.is_nil(pr.metadata.labels["team"])
            assert.is_nil(pr.metadata.labels["count"])
            assert.are.equal("rel-7", pr.metadata.labels["release.appstudio.openshift.io/name"])
            assert.are.equal(3, #logs)
            local seen = {}
            for _, l in ipairs(logs) do
                assert.are.equal("warn", l.level)
                assert.are.equal("request label is not valid on a PipelineRun; left off", l.msg)
                assert.are.equal("tenant-b/push-to-registry", l.fields.request)
                seen[l.fields.label] = l.fields.value
            end
            assert.same({ ["bad key!"] = "v", team = string.rep("a", 64), count = "number" }, seen)
        end)

        it("are only the system labels when the request has none", function()
            local request = fixtures.load("requests/pipeline-fields.json")
            assert.is_nil(request.metadata.labels)
            local pr = pipelinerun.build(request, nil, NAMESPACE)
            local count = 0
            for _ in pairs(pr.metadata.labels) do count = count + 1 end
            assert.are.equal(4, count)
        end)
    end)

    it("annotates the PipelineRun with the request's key and uid", function()
        local pr = pipelinerun.build(fixtures.load("requests/git.json"), nil, NAMESPACE)
        assert.are.equal("tenant-b/push-to-registry", pr.metadata.annotations[resources.annotations.request])
        assert.are.equal("9d8e7f60-5a4b-4c3d-8e2f-1a0b9c8d7e6f",
            pr.metadata.annotations[resources.annotations.remote_uid])
    end)

    it("writes the operator-sdk owner annotations the existing controller writes", function()
        local pr = pipelinerun.build(fixtures.load("requests/git.json"), nil, NAMESPACE)
        assert.are.equal("tenant-b/push-to-registry", pr.metadata.annotations["operator-sdk/primary-resource"])
        assert.are.equal("InternalRequest.appstudio.redhat.com",
            pr.metadata.annotations["operator-sdk/primary-resource-type"])
    end)

    it("sorts params by name", function()
        local request = fixtures.load("requests/basic.json")
        request.spec.params = { c = "3", a = "1", b = "2", B = "0" }
        local pr = pipelinerun.build(request, nil, NAMESPACE)
        assert.same({ { name = "B", value = "0" }, { name = "a", value = "1" },
            { name = "b", value = "2" }, { name = "c", value = "3" } }, pr.spec.params)
    end)

    it("accepts the same param in both places when the values agree", function()
        local request = fixtures.load("requests/pipeline-fields.json")
        local pr = pipelinerun.build(request, nil, NAMESPACE)
        assert.are.equal("prod", param(pr.spec.params, "target"))
    end)

    it("omits params, timeouts and the ServiceAccount when the request has none", function()
        local pr = pipelinerun.build(fixtures.load("requests/long-name.json"), nil, NAMESPACE)
        assert.is_nil(pr.spec.params)
        assert.is_nil(pr.spec.timeouts)
        assert.is_nil(pr.spec.taskRunTemplate)
    end)

    it("treats an empty serviceAccount as unset", function()
        local request = fixtures.load("requests/basic.json")
        request.spec.serviceAccount = ""
        assert.is_nil(pipelinerun.build(request, nil, NAMESPACE).spec.taskRunTemplate)
    end)

    it("uses the default workspace without a config or volumeClaim", function()
        local expected = {
            name = "workspace",
            volumeClaimTemplate = { spec = { accessModes = { "ReadWriteOnce" },
                resources = { requests = { storage = "1Gi" } } } },
        }
        local request = fixtures.load("requests/basic.json")
        assert.same({ expected }, pipelinerun.build(request, nil, NAMESPACE).spec.workspaces)
        assert.same({ expected },
            pipelinerun.build(request, fixtures.load("configs/empty.json"), NAMESPACE).spec.workspaces)
    end)

    it("requires the controller namespace", function()
        assert.has_error(function() pipelinerun.build(fixtures.load("requests/basic.json"), nil, nil) end)
    end)

    it("runs a request whose name is longer than a label value holds, the name label cut", function()
        local request = fixtures.load("requests/name-over-63.json")
        local pr = assert(pipelinerun.build(request, nil, NAMESPACE))
        local labels = pr.metadata.labels
        assert.are.equal("a-request-name-that-is-much-longer-than-sixty-three-characters", labels[resources.labels.name])
        for key, value in pairs(labels) do
            assert.is_true(names.is_label_key(key), key)
            assert.is_true(names.is_label_value(value), key .. "=" .. value)
        end
        assert.are.equal("tenant-a/" .. request.metadata.name, pr.metadata.annotations[resources.annotations.request])
        assert.is_true(names.is_dns_label(pr.metadata.name), pr.metadata.name)
    end)

    describe("refuses a malformed request, naming the field", function()
        local malformed = {
            { "missing-resolver", "spec.pipeline.pipelineRef.resolver is missing" },
            { "param-not-string", "spec.params.retries must be a string, got number" },
            { "resolver-param-not-string",
                'spec.pipeline.pipelineRef.params[1].value (parameter "revision") must be a string, got array' },
            { "bad-timeout", 'spec.timeouts.pipeline: invalid duration "abc": expected a number at position 1' },
            { "negative-timeout", 'spec.timeouts.tasks: invalid duration "-1s": negative durations are not allowed' },
            { "bad-service-account", 'spec.serviceAccount "Release_Bot" is not a valid ServiceAccount name '
                .. "(lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit)" },
            { "conflicting-param",
                'spec.pipeline.params[0] ("quay.io/example/app:2") conflicts with spec.params.image ("quay.io/example/app:1")' },
            { "timeout-budget", 'spec.timeouts.tasks ("2h") exceeds spec.timeouts.pipeline ("1h")' },
        }
        for _, case in ipairs(malformed) do
            it("requests/" .. case[1] .. ".json", function()
                local pr, err = pipelinerun.build(fixtures.load("requests/" .. case[1] .. ".json"), nil, NAMESPACE)
                assert.is_nil(pr)
                assert.are.equal(case[2], err)
            end)
        end

        local function build_with(mutate)
            local request = fixtures.load("requests/basic.json")
            mutate(request)
            return pipelinerun.build(request, nil, NAMESPACE)
        end

        local edits = {
            { "no spec", function(r) r.spec = nil end, "spec is missing" },
            { "no spec.pipeline", function(r) r.spec.pipeline = nil end, "spec.pipeline is missing" },
            { "no pipelineRef", function(r) r.spec.pipeline.pipelineRef = nil end,
                "spec.pipeline.pipelineRef is missing" },
            { "empty resolver", function(r) r.spec.pipeline.pipelineRef.resolver = "" end,
                "spec.pipeline.pipelineRef.resolver is missing" },
            { "resolver not a string", function(r) r.spec.pipeline.pipelineRef.resolver = 7 end,
                "spec.pipeline.pipelineRef.resolver must be a string, got number" },
            { "resolver params not a list", function(r) r.spec.pipeline.pipelineRef.params = { url = "x" } end,
                "spec.pipeline.pipelineRef.params must be a list of {name, value}" },
            { "resolver param without name", function(r) r.spec.pipeline.pipelineRef.params[2] = { value = "x" } end,
                "spec.pipeline.pipelineRef.params[1].name must be a non-empty string" },
            { "repeated resolver param", function(r)
                r.spec.pipeline.pipelineRef.params[2] = { name = "name", value = "other" } end,
                'spec.pipeline.pipelineRef.params[1] repeats parameter "name", first given at spec.pipeline.pipelineRef.params[0]' },
            { "param with an empty name", function(r) r.spec.params = { [""] = "x", ok = "y" } end,
                "spec.params has a parameter with an empty name" },
            { "params a list", function(r) r.spec.params = { "a" } end,
                "spec.params must be an object of parameter names to string values" },
            { "params value an object", function(r) r.spec.params.snapshot = { id = "1" } end,
                "spec.params.snapshot must be a string, got object" },
            { "unknown timeout", function(r) r.spec.timeouts = { total = "1h" } end,
                "spec.timeouts.total is not a Tekton timeout (pipeline, tasks, finally)" },
            { "timeout a number", function(r) r.spec.timeouts = { pipeline = 60 } end,
                "spec.timeouts.pipeline must be a duration string, got number" },
            { "finally over budget", function(r) r.spec.timeouts = { pipeline = "1h", finally = "61m" } end,
                'spec.timeouts.finally ("61m") exceeds spec.timeouts.pipeline ("1h")' },
            { "tasks plus finally over budget", function(r)
                r.spec.timeouts = { pipeline = "1h", tasks = "40m", finally = "30m" } end,
                'spec.timeouts.tasks ("40m") plus spec.timeouts.finally ("30m") exceeds spec.timeouts.pipeline ("1h")' },
            { "unlimited tasks under a pipeline limit", function(r)
                r.spec.timeouts = { pipeline = "1h", tasks = "0" } end,
                'spec.timeouts.tasks ("0") exceeds spec.timeouts.pipeline ("1h")' },
            { "conflicting timeouts", function(r)
                r.spec.timeouts = { pipeline = "1h" }
                r.spec.pipeline.timeouts = { pipeline = "2h" } end,
                'spec.pipeline.timeouts.pipeline ("2h") conflicts with spec.timeouts.pipeline ("1h")' },
            { "conflicting ServiceAccounts", function(r)
                r.spec.serviceAccount = "a"
                r.spec.pipeline.serviceAccountName = "b" end,
                'spec.pipeline.serviceAccountName ("b") conflicts with spec.serviceAccount ("a")' },
            { "ServiceAccount too long", function(r) r.spec.serviceAccount = string.rep("a", 64) end,
                'spec.serviceAccount "' .. string.rep("a", 64) .. '" is not a valid ServiceAccount name '
                .. "(lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit)" },
            { "no uid", function(r) r.metadata.uid = nil end, "metadata.uid is missing" },
        }
        for _, case in ipairs(edits) do
            it(case[1], function()
                local pr, err = build_with(case[2])
                assert.is_nil(pr)
                assert.are.equal(case[3], err)
            end)
        end

        it("accepts a zero pipeline timeout with any tasks timeout", function()
            local pr, err = build_with(function(r) r.spec.timeouts = { pipeline = "0", tasks = "5h" } end)
            assert.is_nil(err)
            assert.same({ pipeline = "0", tasks = "5h" }, pr.spec.timeouts)
        end)
    end)
end)
