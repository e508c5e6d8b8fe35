-- wrk script: the same POST on every request. Arguments after `--`: the path, the Bearer
-- key, the JSON body. Counts answers that are not 200 or that carry GraphQL "errors" and
-- prints "lua: ok=N bad=N" when done.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, bad = 0, 0
  wrk.method = "POST"
  wrk.path = args[1]
  wrk.headers["Authorization"] = "Bearer " .. args[2]
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = args[3]
end

function response(status, headers, body)
  if status == 200 and not body:find('"errors"', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local o, b = 0, 0
  for _, thread in ipairs(threads) do
    o = o + thread:get("ok")
    b = b + thread:get("bad")
  end
  io.write(string.format("lua: ok=%d bad=%d\n", o, b))
end
