-- PUT with a JSON body: the same instant each time, on one name.
wrk.method = "PUT"
wrk.body = '{"epoch_ms": 1795628183123}'
wrk.headers["Content-Type"] = "application/json"
