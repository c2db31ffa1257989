-- host.metric in memory, with the C registry's contract: families by
-- name (the same shape again is the same family), counters that only go
-- up, histograms with count and sum, and a cap that makes an operation
-- return nil and a message instead of raising.
local fake_metrics = {}

local Registry = {}
Registry.__index = Registry

function fake_metrics.new(opts)
    opts = opts or {}
    local r = setmetatable({ families = {}, max_series = opts.max_series or math.huge, series = 0 }, Registry)
    r.define = function(spec) return r:family(spec) end
    return r
end

local Family = {}
Family.__index = Family

function Registry:family(spec)
    assert(spec.type == "counter" or spec.type == "gauge" or spec.type == "histogram", "bad type")
    assert(type(spec.name) == "string" and type(spec.help) == "string", "name and help")
    if spec.type == "histogram" then assert(type(spec.buckets) == "table", "a histogram needs buckets") end
    local f = self.families[spec.name]
    if f then
        assert(f.type == spec.type and table.concat(f.labels, ",") == table.concat(spec.labels or {}, ","),
            spec.name .. " registered before with others")
        return f
    end
    f = setmetatable({ registry = self, type = spec.type, name = spec.name, help = spec.help,
                       labels = spec.labels or {}, buckets = spec.buckets, values = {} }, Family)
    self.families[spec.name] = f
    return f
end

function Family:key(labels)
    local parts = {}
    for i, name in ipairs(self.labels) do
        local v = labels and labels[name]
        if v == nil then v = "" end
        assert(type(v) == "string" or type(v) == "number" or type(v) == "boolean",
            self.name .. ": label " .. name .. " must be a string, number or boolean")
        parts[i] = tostring(v)
    end
    return table.concat(parts, "\0")
end

function Family:series(labels)
    local k = self:key(labels)
    local s = self.values[k]
    if not s then
        if self.registry.series >= self.registry.max_series then return nil, self.name .. ": limit reached" end
        self.registry.series = self.registry.series + 1
        s = { value = 0, count = 0 }
        self.values[k] = s
    end
    return s
end

function Family:add(labels, delta)
    delta = delta or 1
    assert(self.type ~= "histogram", self.name .. ": operation not valid")
    assert(self.type ~= "counter" or delta >= 0, self.name .. ": operation not valid")
    local s, err = self:series(labels)
    if not s then return nil, err end
    s.value = s.value + delta
    return true
end

function Family:inc(labels) return self:add(labels, 1) end

function Family:set(labels, value)
    assert(self.type == "gauge", self.name .. ": operation not valid")
    local s, err = self:series(labels)
    if not s then return nil, err end
    s.value = value
    return true
end

function Family:observe(labels, value)
    assert(self.type == "histogram", self.name .. ": operation not valid")
    local s, err = self:series(labels)
    if not s then return nil, err end
    s.count = s.count + 1
    s.value = s.value + value
    return true
end

-- Reading back: the value (a histogram's count and sum), nil when the
-- series was never touched.
function Registry:value(name, labels)
    local f = self.families[name]
    if not f then return nil end
    local s = f.values[f:key(labels)]
    if not s then return nil end
    if f.type == "histogram" then return s.count, s.value end
    return s.value
end

return fake_metrics
