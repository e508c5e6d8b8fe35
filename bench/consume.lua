-- wrk script: POST /v1/usage with one token event per request, amount 1, a model and an
-- action, and an idempotency key unique per request (run tag, thread id, counter).
-- Arguments after `--`: a file of service keys, one per line (one per organization), then a
-- run tag. Each thread takes the keys in turn, one key per request, from a random one on
-- (another each run).
-- Counts the answers by status and prints "lua: accepted=N rejected=N other=N" when done,
-- and "lua note: ..." with each thread's first other answer (status and body), if any.
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  keys = {}
  for line in io.lines(args[1]) do
    if #line > 0 then
      keys[#keys + 1] = "Bearer " .. line
    end
  end
  if #keys == 0 then
    error("no key in " .. args[1])
  end
  tag = args[2]
  math.randomseed(os.time() * 1000 + id)
  turn = math.random(#keys)
  sent, accepted, rejected, other, first_other = 0, 0, 0, 0, ""
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  sent = sent + 1
  turn = turn % #keys + 1
  wrk.headers["Authorization"] = keys[turn]
  local body = string.format(
    '{"events":[{"resource":"tokens","amount":1,"idempotency_key":"%s-%d-%d",'
      .. '"model":"gpt-4o-mini","action":"chat_reply"}]}',
    tag, id, sent)
  return wrk.format(nil, "/v1/usage", nil, body)
end

function response(status, headers, body)
  if status == 200 and body:find('"status":"accepted"', 1, true) then
    accepted = accepted + 1
  elseif status == 200 and body:find('"code":"LIMIT_EXCEEDED"', 1, true) then
    rejected = rejected + 1
  else
    other = other + 1
    if first_other == "" then
      first_other = status .. " " .. body:sub(1, 300):gsub("%s+", " ")
    end
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
  for _, thread in ipairs(threads) do
    local note = thread:get("first_other")
    if note ~= "" then
      io.write("lua note: first other answer: " .. note .. "\n")
    end
  end
end
