-- wrk: every request is a POST of the JSON string "42" to the URL given on the command line (keep-alive).
wrk.method = "POST"
wrk.body = '"42"'
wrk.headers["Content-Type"] = "application/json"
