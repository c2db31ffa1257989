local names = require "internal_services.names"
local fixtures = require "support.fixtures"

local function request(namespace, name, uid)
    return { metadata = { namespace = namespace, name = name, uid = uid } }
end

describe("names.fnv1a64", function()
    it("matches the published FNV-1a 64-bit test vectors", function()
        assert.are.equal("cbf29ce484222325", names.fnv1a64(""))
        assert.are.equal("af63dc4c8601ec8c", names.fnv1a64("a"))
        assert.are.equal("85944171f73967e8", names.fnv1a64("foobar"))
    end)
end)

describe("names.sanitize", function()
    it("lowercases and replaces characters DNS-1123 does not allow", function()
        assert.are.equal("release-v1-2-3", names.sanitize("Release.V1.2.3", 63))
        assert.are.equal("a-b", names.sanitize("a__b", 63))
    end)

    it("trims dashes at both ends, also after cutting", function()
        assert.are.equal("abc", names.sanitize("--abc--", 63))
        assert.are.equal("ab", names.sanitize("ab-cd", 3))
    end)

    it("may return an empty string", function()
        assert.are.equal("", names.sanitize("...", 63))
    end)
end)

describe("names.pipelinerun", function()
    it("is ir-<name>-<16 hex digits of FNV-1a of ns/name/uid>", function()
        local r = request("tenant-a", "basic", "5c1d6f0a-3b7e-4f52-9a43-0e2c8d9b1f11")
        local hash = names.fnv1a64("tenant-a/basic/5c1d6f0a-3b7e-4f52-9a43-0e2c8d9b1f11")
        assert.are.equal("ir-basic-" .. hash, names.pipelinerun(r))
    end)

    -- Pinned values: a change here orphans PipelineRuns across an upgrade.
    it("stays the same forever", function()
        assert.are.equal("ir-basic-c4738711a560c96c",
            names.pipelinerun(fixtures.load("requests/basic.json")))
        assert.are.equal("ir-sign-release-c7d331dfd8cf9ee0",
            names.pipelinerun(fixtures.load("requests/cluster-other-namespace.json")))
    end)

    it("is deterministic for the same input", function()
        local r = request("ns", "n", "u")
        assert.are.equal(names.pipelinerun(r), names.pipelinerun(request("ns", "n", "u")))
    end)

    it("differs when uid, namespace or name differ", function()
        local base = names.pipelinerun(request("ns", "n", "uid-1"))
        assert.are_not.equal(base, names.pipelinerun(request("ns", "n", "uid-2")))
        assert.are_not.equal(base, names.pipelinerun(request("ns2", "n", "uid-1")))
        assert.are_not.equal(base, names.pipelinerun(request("ns", "n2", "uid-1")))
    end)

    it("does not collide when the separator moves between fields", function()
        assert.are_not.equal(names.pipelinerun(request("a-b", "c", "u")),
            names.pipelinerun(request("a", "b-c", "u")))
    end)

    it("truncates long names to 63 characters and keeps the whole hash", function()
        local long = string.rep("very-long-request-name-", 10)
        local r = request("tenant-a", long, "u-1")
        local name = names.pipelinerun(r)
        assert.are.equal(63, #name)
        assert.are.equal(names.fnv1a64("tenant-a/" .. long .. "/u-1"), name:sub(-16))
        assert.is_true(names.is_dns_label(name))
        -- Two long names sharing the kept prefix still get distinct names.
        assert.are_not.equal(name, names.pipelinerun(request("tenant-a", long .. "x", "u-1")))
    end)

    it("sanitizes dots and uppercase into a DNS-1123 label", function()
        local r = fixtures.load("requests/long-name.json")
        local name = names.pipelinerun(r)
        assert.are.equal("ir-release-candidate-v1-2-3-for-application-fr-c959a842b1349266", name)
        assert.is_true(names.is_dns_label(name))
        local upper = names.pipelinerun(request("ns", "My.Request_1", "u"))
        assert.matches("^ir%-my%-request%-1%-%x+$", upper)
        assert.is_true(names.is_dns_label(upper))
    end)

    it("removes a dash left at the end by the cut", function()
        local name = names.pipelinerun(request("ns", string.rep("a", 42) .. "-b", "u"))
        assert.are.equal("ir-" .. string.rep("a", 42) .. "-" .. names.fnv1a64("ns/" .. string.rep("a", 42) .. "-b/u"), name)
        assert.is_nil(name:find("%-%-"))
    end)

    it("is ir-<hash> when nothing of the name survives", function()
        assert.are.equal("ir-" .. names.fnv1a64("ns/.../u"), names.pipelinerun(request("ns", "...", "u")))
    end)

    it("raises when metadata is incomplete", function()
        assert.has_error(function() names.pipelinerun(request("ns", "n", nil)) end,
            "names.pipelinerun: request has no metadata.uid")
        assert.has_error(function() names.pipelinerun({}) end)
    end)
end)

describe("names.is_dns_label", function()
    it("accepts DNS-1123 labels", function()
        for _, ok in ipairs { "a", "0", "release-bot", string.rep("a", 63) } do
            assert.is_true(names.is_dns_label(ok), ok)
        end
    end)

    it("rejects everything else", function()
        for _, bad in ipairs { "", "-a", "a-", "Release_Bot", "a.b", string.rep("a", 64), 5 } do
            assert.is_false(names.is_dns_label(bad), tostring(bad))
        end
    end)
end)

describe("names.is_label_value and is_label_key", function()
    it("accepts label values Kubernetes accepts", function()
        for _, ok in ipairs { "", "a", "Release_Bot-1.2", string.rep("a", 63) } do
            assert.is_true(names.is_label_value(ok), ok)
        end
    end)

    it("rejects other values", function()
        for _, bad in ipairs { "-a", "a.", "a b", "a/b", string.rep("a", 64), 3, true } do
            assert.is_false(names.is_label_value(bad), tostring(bad))
        end
    end)

    it("accepts keys with and without a prefix", function()
        for _, ok in ipairs { "team", "internal-services.appstudio.openshift.io/pipelinerun-uid",
            "app.kubernetes.io/part-of", "a/B_c" } do
            assert.is_true(names.is_label_key(ok), ok)
        end
    end)

    it("rejects malformed keys", function()
        for _, bad in ipairs { "", "/a", "a/", "Upper.Case/x", "a/b/c", "bad key", string.rep("a", 64),
            string.rep("a", 254) .. "/x", 1 } do
            assert.is_false(names.is_label_key(bad), tostring(bad))
        end
    end)
end)

describe("names.label_value", function()
    it("keeps a name a label value can hold", function()
        assert.are.equal("sign-1", names.label_value("sign-1"))
        local name63 = string.rep("x", 30) .. "." .. string.rep("y", 32)
        assert.are.equal(name63, names.label_value(name63))
    end)

    it("cuts a longer name at 63 and drops a '.' or '-' left at its end", function()
        local long = string.rep("a", 62) .. ".b" .. string.rep("c", 189)
        assert.are.equal(string.rep("a", 62), names.label_value(long))
        assert.are.equal(string.rep("a", 63), names.label_value(string.rep("a", 253)))
    end)

    it("always returns a valid label value", function()
        for _, name in ipairs { string.rep("a-", 126) .. "a", string.rep("0.", 126) .. "0", "-x-", "a_b", "é" } do
            local value = names.label_value(name)
            assert.is_true(names.is_label_value(value), name .. " -> " .. value)
        end
    end)
end)
