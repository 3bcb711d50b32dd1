-- wrk: writes N series, each in a group of its own: series i is metric m-<i / 1000> of pod p in namespace
-- ns-<i % 1000>, for i = BASE .. BASE + N - 1. Arguments (after --): N BASE THREADS DIR (THREADS = wrk -t).
-- Each thread writes its share of consecutive indexes, then keeps overwriting its first one until it has as many
-- answers, and creates DIR/done.<thread> (bench/discovery then interrupts wrk, which prints the summary).
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local total = tonumber(args[1])
  share = math.floor(total / tonumber(args[3]))
  first = tonumber(args[2]) + id * share
  marker = args[4] .. "/done." .. id
  sent, answered, failed = 0, 0, 0
  wrk.method = "POST"
  wrk.body = '"42"'
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local i = first
  if sent < share then
    i = first + sent
    sent = sent + 1
  end
  return wrk.format(nil, "/write-metrics/namespaces/ns-" .. (i % 1000) .. "/pods/p/m-" .. math.floor(i / 1000))
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
