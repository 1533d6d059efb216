-- bench/keys.lua - wrk script for bench/keys.sh: every request carries another API key, rotating through
-- all the keys of a file (one raw key a line), so the gateway sees many consumers instead of one.
--
--   wrk -t1 -c64 -d5s -s bench/keys.lua http://127.0.0.1:PORT/ -- KEYS_FILE [HEADER]
--
-- KEYS_FILE may also come from the environment (KEYS_FILE=...), HEADER too (KEYS_HEADER, default
-- X-API-Key). The requests are formatted once in init(), so request() only steps an index and returns
-- a prepared string. When the run ends, done() prints one line for the calling script:
--   bench-result rps=.. p50_us=.. p99_us=.. requests=.. socket_errors=.. non2xx=.. keys_used=.. keys=..
--                s401=.. s503=.. sother=..   (the non-2xx answers by status: 401, 503, any other)
-- keys_used: distinct keys put into requests, min(requests built, keys) per thread, the largest over the
-- threads (exact with -t1, a lower bound with more threads, whose starting points differ).

local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("thread_id", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

local reqs, n, i = {}, 0, 0
-- globals, for done() to read with thread:get(): requests built, keys loaded, answers by status
built, keys, st401, st503, stother = 0, 0, 0, 0, 0

function init(args)
  local path = args[1] or os.getenv("KEYS_FILE")
  local header = args[2] or os.getenv("KEYS_HEADER") or "X-API-Key"
  if not path or path == "" then
    error("keys.lua: no keys file (wrk ... -- KEYS_FILE, or KEYS_FILE in the environment)")
  end
  local f = io.open(path, "r")
  if not f then error("keys.lua: cannot open " .. path) end
  for line in f:lines() do
    local key = line:match("^%s*(%S+)%s*$")
    if key then
      n = n + 1
      reqs[n] = wrk.format("GET", wrk.path, { [header] = key })
    end
  end
  f:close()
  if n == 0 then error("keys.lua: no key in " .. path) end
  -- each thread starts elsewhere in the list (thread_id is set by setup() before init runs)
  i = ((thread_id or 0) * 7919) % n
  keys = n
end

function request()
  i = i + 1
  if i > n then i = 1 end
  built = built + 1
  return reqs[i]
end

-- what the non-2xx answers were: 401 (a key not confirmed), 503 (a store failure), anything else
function response(status, headers, body)
  if status ~= 200 then
    if status == 401 then st401 = st401 + 1
    elseif status == 503 then st503 = st503 + 1
    else stother = stother + 1 end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1000000
  local used, nkeys, s401, s503, sother = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    local b, k = tonumber(t:get("built")) or 0, tonumber(t:get("keys")) or 0
    if k > nkeys then nkeys = k end
    local u = math.min(b, k)
    if u > used then used = u end
    s401 = s401 + (tonumber(t:get("st401")) or 0)
    s503 = s503 + (tonumber(t:get("st503")) or 0)
    sother = sother + (tonumber(t:get("stother")) or 0)
  end
  io.write(string.format(
    "bench-result rps=%.1f p50_us=%d p99_us=%d requests=%d socket_errors=%d non2xx=%d keys_used=%d keys=%d " ..
    "s401=%d s503=%d sother=%d\n",
    summary.requests / seconds, latency:percentile(50), latency:percentile(99), summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status, used, nkeys, s401, s503, sother))
end
