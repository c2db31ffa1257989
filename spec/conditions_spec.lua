local conditions = require "internal_services.conditions"
local fixtures = require "support.fixtures"

local T0 = 1795428000 -- 2026-11-23T10:00:00Z
local T1 = T0 + 300

describe("conditions.rfc3339", function()
    it("formats epoch seconds in UTC", function()
        assert.are.equal("2026-11-23T10:00:00Z", conditions.rfc3339(T0))
        assert.are.equal("1970-01-01T00:00:00Z", conditions.rfc3339(0))
    end)

    it("ignores the local time zone", function()
        -- A fresh interpreter with a +14:00 zone (POSIX TZ needs no tzdata).
        local root = fixtures.root:gsub("/tests/fixtures$", "")
        local script = 'package.path = "' .. root .. '/lua/?.lua;" .. package.path; '
            .. 'io.write(require("internal_services.conditions").rfc3339(' .. T0 .. '))'
        local p = assert(io.popen("TZ=UTC-14 lua5.4 -e '" .. script .. "'"))
        local out = p:read("a")
        p:close()
        assert.are.equal("2026-11-23T10:00:00Z", out)
    end)

    it("drops fractions of a second", function()
        assert.are.equal("2026-11-23T10:00:00Z", conditions.rfc3339(T0 + 0.75))
    end)
end)

describe("conditions.set", function()
    it("adds the Succeeded condition", function()
        local status = {}
        local changed = conditions.set(status, { status = "Unknown", reason = "Running", message = "m" }, T0, 1)
        assert.is_true(changed)
        assert.same({ {
            type = "Succeeded", status = "Unknown", reason = "Running", message = "m",
            lastTransitionTime = "2026-11-23T10:00:00Z", observedGeneration = 1,
        } }, status.conditions)
    end)

    it("keeps lastTransitionTime while the status is unchanged", function()
        local status = {}
        conditions.set(status, { status = "Unknown", reason = "Running", message = "a" }, T0, 1)
        local changed = conditions.set(status, { status = "Unknown", reason = "Running", message = "b" }, T1, 2)
        assert.is_true(changed)
        local c = status.conditions[1]
        assert.are.equal("2026-11-23T10:00:00Z", c.lastTransitionTime)
        assert.are.equal("b", c.message)
        assert.are.equal(2, c.observedGeneration)
    end)

    it("moves lastTransitionTime when the status changes", function()
        local status = {}
        conditions.set(status, { status = "Unknown", reason = "Running" }, T0, 1)
        conditions.set(status, { status = "True", reason = "Succeeded" }, T1, 1)
        assert.are.equal(1, #status.conditions)
        assert.are.equal("2026-11-23T10:05:00Z", status.conditions[1].lastTransitionTime)
        assert.are.equal("", status.conditions[1].message)
    end)

    it("reports no change for an identical condition", function()
        local status = {}
        conditions.set(status, { status = "False", reason = "Failed", message = "x" }, T0, 1)
        assert.is_false(conditions.set(status, { status = "False", reason = "Failed", message = "x" }, T1, 1))
        assert.are.equal("2026-11-23T10:00:00Z", status.conditions[1].lastTransitionTime)
    end)

    it("leaves conditions of other types alone", function()
        local other = { type = "Ready", status = "True", reason = "Ok", message = "",
            lastTransitionTime = "2026-01-01T00:00:00Z" }
        local status = { conditions = { other } }
        conditions.set(status, { status = "Unknown", reason = "Running" }, "2026-11-23T10:00:00Z", 1)
        assert.are.equal(2, #status.conditions)
        assert.same({ type = "Ready", status = "True", reason = "Ok", message = "",
            lastTransitionTime = "2026-01-01T00:00:00Z" }, status.conditions[1])
    end)
    it("cuts a message to what the CRD holds, at a character boundary", function()
        local status = {}
        -- 2-byte characters put the cut inside one unless it backs off.
        local long = "x" .. string.rep("\195\169", conditions.MESSAGE_MAX)
        conditions.set(status, { status = "False", reason = "Failed", message = long }, T0, 1)
        local message = status.conditions[1].message
        assert.is_true(#message <= conditions.MESSAGE_MAX, tostring(#message))
        assert.are.equal("... (truncated)", message:sub(-15))
        assert.is_truthy(utf8.len(message), "the cut split a character")
        -- Setting the same long message again is no change.
        assert.is_false(conditions.set(status, { status = "False", reason = "Failed", message = long }, T1, 1))
    end)

    it("keeps a message of exactly the limit whole", function()
        local status = {}
        local exact = string.rep("m", conditions.MESSAGE_MAX)
        conditions.set(status, { status = "False", reason = "Failed", message = exact }, T0, 1)
        assert.are.equal(exact, status.conditions[1].message)
    end)
end)

describe("conditions.get and is_finished", function()
    it("finds the Succeeded condition", function()
        local c = conditions.get(fixtures.load("requests/running.json"))
        assert.are.equal("Unknown", c.status)
        assert.are.equal("Running", c.reason)
        assert.is_nil(conditions.get(fixtures.load("requests/basic.json")))
        assert.is_nil(conditions.get({}))
    end)

    local function with(status, reason)
        return { status = { conditions = { { type = "Succeeded", status = status, reason = reason } } } }
    end

    it("is finished only with reason Succeeded, Failed or Rejected", function()
        assert.is_true(conditions.is_finished(fixtures.load("requests/succeeded.json")))
        for _, reason in ipairs { "Failed", "Rejected" } do
            assert.is_true(conditions.is_finished(with("False", reason)), reason)
        end
        assert.is_false(conditions.is_finished(with("False", "Anything")))
        assert.is_false(conditions.is_finished(with("Unknown", "Failed")))
        assert.is_false(conditions.is_finished(fixtures.load("requests/running.json")))
        assert.is_false(conditions.is_finished(fixtures.load("requests/basic.json")))
    end)

    it("is not finished for the existing Go controller's False/Running", function()
        local legacy = fixtures.load("requests/legacy-running.json")
        assert.are.equal("False", conditions.get(legacy).status)
        assert.is_false(conditions.is_finished(legacy))
        assert.is_true(conditions.is_running(legacy))
    end)

    it("is running for reason Running only", function()
        assert.is_true(conditions.is_running(fixtures.load("requests/running.json")))
        assert.is_false(conditions.is_running(fixtures.load("requests/succeeded.json")))
        assert.is_false(conditions.is_running(fixtures.load("requests/basic.json")))
    end)

    it("counts a running request as finished once a later outcome is written", function()
        local request = fixtures.load("requests/legacy-running.json")
        request.status = conditions.failed(request, "boom", T1)
        assert.is_true(conditions.is_finished(request))
        assert.are.equal("2026-11-23T10:05:00Z", request.status.completionTime)
    end)
end)

describe("status builders", function()
    local PR_REF = "internal-services/ir-basic-c4738711a560c96c"

    it("running sets the condition, startTime and pipelineRun", function()
        local request = fixtures.load("requests/basic.json")
        local status = conditions.running(request, PR_REF, T0)
        assert.same({
            pipelineRun = PR_REF,
            startTime = "2026-11-23T10:00:00Z",
            conditions = { {
                type = "Succeeded", status = "Unknown", reason = "Running",
                message = "PipelineRun " .. PR_REF .. " is running",
                lastTransitionTime = "2026-11-23T10:00:00Z", observedGeneration = 1,
            } },
        }, status)
        assert.is_nil(request.status)
    end)

    it("running keeps startTime and lastTransitionTime of a running request", function()
        local request = fixtures.load("requests/running.json")
        local status = conditions.running(request, PR_REF, T1, "still going")
        assert.are.equal("2026-11-23T10:00:00Z", status.startTime)
        assert.are.equal("2026-11-23T10:00:00Z", status.conditions[1].lastTransitionTime)
        assert.are.equal("still going", status.conditions[1].message)
        assert.are.equal(2, status.conditions[1].observedGeneration)
    end)

    it("succeeded records results and completionTime, leaving the old status untouched", function()
        local request = fixtures.load("requests/running.json")
        local status = conditions.succeeded(request, { digest = "sha256:1", tags = '["a"]' }, T1)
        local c = status.conditions[1]
        assert.are.equal("True", c.status)
        assert.are.equal("Succeeded", c.reason)
        assert.are.equal("2026-11-23T10:05:00Z", c.lastTransitionTime)
        assert.are.equal("2026-11-23T10:05:00Z", status.completionTime)
        assert.are.equal("2026-11-23T10:00:00Z", status.startTime)
        assert.are.equal("internal-services/ir-running-3c1f0e9a7b5d2c4e", status.pipelineRun)
        assert.same({ digest = "sha256:1", tags = '["a"]' }, status.results)
        assert.same(fixtures.load("requests/running.json"), request)
    end)

    it("succeeded without results records an empty map", function()
        local status = conditions.succeeded(fixtures.load("requests/running.json"), nil, T1)
        assert.same({}, status.results)
    end)

    it("failed sets False/Failed with the message", function()
        local status = conditions.failed(fixtures.load("requests/running.json"),
            "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0", T1)
        local c = status.conditions[1]
        assert.are.equal("False", c.status)
        assert.are.equal("Failed", c.reason)
        assert.are.equal("Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0", c.message)
        assert.are.equal("2026-11-23T10:05:00Z", status.completionTime)
    end)

    it("rejected sets False/Rejected without a PipelineRun", function()
        local request = fixtures.load("requests/basic.json")
        local status = conditions.rejected(request, 'namespace "tenant-a" is not in the allowList', T0)
        assert.same({
            completionTime = "2026-11-23T10:00:00Z",
            conditions = { {
                type = "Succeeded", status = "False", reason = "Rejected",
                message = 'namespace "tenant-a" is not in the allowList',
                lastTransitionTime = "2026-11-23T10:00:00Z", observedGeneration = 1,
            } },
        }, status)
    end)

    it("keeps the first completionTime of a finished request", function()
        local status = conditions.failed(fixtures.load("requests/succeeded.json"), "late", T1 + 600)
        assert.are.equal("2026-11-23T10:05:00Z", status.completionTime)
    end)

    it("accepts now as an RFC 3339 string", function()
        local status = conditions.failed(fixtures.load("requests/basic.json"), "x", "2026-11-23T12:00:00Z")
        assert.are.equal("2026-11-23T12:00:00Z", status.completionTime)
        assert.are.equal("2026-11-23T12:00:00Z", status.conditions[1].lastTransitionTime)
    end)

    it("uses only the four reasons", function()
        assert.same({ running = "Running", succeeded = "Succeeded", failed = "Failed", rejected = "Rejected" },
            conditions.reasons)
        assert.are.equal("Succeeded", conditions.TYPE)
    end)
end)
