-- wrk script for the serving benchmark: rotates request bodies and checks every answer.
--
--   wrk -t N -c N -d 10s --timeout 60s -s benchmarks/wrk/rotate.lua URL -- DATA.lua
--
-- DATA.lua (written by benchmarks/serving.py) returns {bodies = {...}, expect = {...}}: expect[i] is the label
-- the raw model gives body i, or "" for a malformed body, which must be answered 4xx. Run with as many threads
-- as connections (-t N -c N): each thread then has one connection, so its answers arrive in the order of its
-- requests and each can be checked against the body it answers. done() prints one line "RESULT {json}".

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  data = dofile(args[1])
  n = #data.bodies
  -- threads start at different places in the rotation
  index = (id * 7919) % n
  pending = nil
  good_ok, good_wrong, good_failed, bad_4xx, bad_other = 0, 0, 0, 0, 0
  statuses = {}
  wrong_example = ""
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  index = index % n + 1
  pending = index
  return wrk.format(nil, nil, nil, data.bodies[index])
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  local expect = data.expect[pending]
  if expect == "" then
    if status >= 400 and status < 500 then bad_4xx = bad_4xx + 1 else bad_other = bad_other + 1 end
  elseif status ~= 200 then
    good_failed = good_failed + 1
    if wrong_example == "" then wrong_example = key .. " " .. string.sub(body or "", 1, 200) end
  else
    -- the label is the last quoted word before a closing bracket: {"predictions":["x"]}, ["x"]
    local got = string.match(body, '"([^"]*)"%s*%]')
    if got == expect then
      good_ok = good_ok + 1
    else
      good_wrong = good_wrong + 1
      if wrong_example == "" then wrong_example = "expected " .. expect .. ", got " .. string.sub(body, 1, 200) end
    end
  end
end

local function json_string(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local totals = {good_ok = 0, good_wrong = 0, good_failed = 0, bad_4xx = 0, bad_other = 0}
  local statuses_all = {}
  local example = ""
  for _, thread in ipairs(threads) do
    for k, _ in pairs(totals) do totals[k] = totals[k] + (thread:get(k) or 0) end
    for code, count in pairs(thread:get("statuses") or {}) do
      statuses_all[code] = (statuses_all[code] or 0) + count
    end
    local e = thread:get("wrong_example")
    if example == "" and e ~= nil then example = e end
  end
  local parts = {}
  for k, v in pairs(totals) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local codes = {}
  for k, v in pairs(statuses_all) do table.insert(codes, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},%s,"statuses":{%s},"wrong_example":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    table.concat(parts, ","), table.concat(codes, ","), json_string(example)))
end
