-- 90% GET, 10% PUT of the same name: every tenth request of each connection is a PUT.
-- The requests are formatted in init, once wrk has set the Host header (HTTP/1.1 requires it,
-- and the service refuses a request without it).
local get, put
local counter = 0

init = function(args)
    get = wrk.format("GET", "/v1/timestamps/bench")
    put = wrk.format("PUT", "/v1/timestamps/bench",
        { ["Host"] = wrk.headers["Host"], ["Content-Type"] = "application/json" },
        '{"epoch_ms": 1795628183123}')
end

request = function()
    counter = counter + 1
    if counter % 10 == 0 then
        return put
    end
    return get
end
