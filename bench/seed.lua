-- wrk: writes N distinct series, then stops. Arguments (after --): N PREFIX METRIC THREADS DIR [QUERY] (THREADS = wrk
-- -t; QUERY, e.g. "ttl=30s", is added to every write).
-- Each thread writes N/threads pods named PREFIX-<thread>-<i>, i = 0, 1, ...; once its share has been sent it keeps
-- overwriting its first pod (so at most N distinct series are ever sent) until it has N/threads answers, then stops.
-- The server must be seeded on a fresh metric: the number of stored series is then N exactly.
-- wrk's main thread sleeps for the whole -d duration: each thread creates DIR/done.<thread> when it has finished, and
-- bench/run then interrupts wrk (SIGINT), which prints the summary below.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local total = tonumber(args[1])
  prefix = args[2]
  metric = args[3]
  marker = args[5] .. "/done." .. id
  share = math.floor(total / tonumber(args[4]))
  query = (args[6] and args[6] ~= "") and ("?" .. args[6]) or ""
  sent, answered, failed = 0, 0, 0
  wrk.method = "POST"
  wrk.body = '"42"'
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local i = 0
  if sent < share then
    i = sent
    sent = sent + 1
  end
  return wrk.format(nil, "/write-metrics/namespaces/default/pods/" .. prefix .. "-" .. id .. "-" .. i .. "/" .. metric .. query)
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then failed = failed + 1 end
  if answered == share then
    local file = io.open(marker, "w")
    if file then file:close() end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local sent_total, failed_total = 0, 0
  for _, thread in ipairs(threads) do
    sent_total = sent_total + thread:get("sent")
    failed_total = failed_total + thread:get("failed")
  end
  io.write(string.format("seeded distinct=%d failed=%d\n", sent_total, failed_total))
end
