-- 90% GET, 10% PUT of the same name: every tenth request of each connection is a PUT.
local get = wrk.format("GET", "/v1/timestamps/bench")
local put = wrk.format("PUT", "/v1/timestamps/bench",
    { ["Content-Type"] = "application/json" }, '{"epoch_ms": 1795628183123}')
local counter = 0

request = function()
    counter = counter + 1
    if counter % 10 == 0 then
        return put
    end
    return get
end
