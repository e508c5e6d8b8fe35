-- wrk script: POST /v1/usage with one token event per request, amount 1, a model and an
-- action, and an idempotency key unique per request (run tag, thread id, counter).
-- Arguments after `--`: the service key, then a run tag. Counts the answers by status and
-- prints "lua: accepted=N rejected=N other=N" when done.
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  tag = args[2]
  sent, accepted, rejected, other = 0, 0, 0, 0
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  sent = sent + 1
  local body = string.format(
    '{"events":[{"resource":"tokens","amount":1,"idempotency_key":"%s-%d-%d",'
      .. '"model":"gpt-4o-mini","action":"chat_reply"}]}',
    tag, id, sent)
  return wrk.format(nil, "/v1/usage", nil, body)
end

function response(status, headers, body)
  if status ~= 200 then
    other = other + 1
  elseif body:find('"status":"accepted"', 1, true) then
    accepted = accepted + 1
  elseif body:find('"code":"LIMIT_EXCEEDED"', 1, true) then
    rejected = rejected + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, r, o = 0, 0, 0
  for _, thread in ipairs(threads) do
    a = a + thread:get("accepted")
    r = r + thread:get("rejected")
    o = o + thread:get("other")
  end
  io.write(string.format("lua: accepted=%d rejected=%d other=%d\n", a, r, o))
end
