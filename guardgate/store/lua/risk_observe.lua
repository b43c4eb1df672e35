-- Record one request in its caller's risk state and read back what scoring
-- needs. The math mirrors guardgate/store/risk.py's MemoryRisk exactly; a
-- change to one is a change to both. Only the caller's own keys, which share
-- one hash slot ({principal}); the cross-account cluster counts are plain
-- commands sent in the same pipeline (RedisRisk.observe).
--
-- KEYS: the caller's hash, its distinct skeletons, its distinct prompts,
--       then its request counters, one per bucket of the window, oldest
--       first, the current one last.
-- ARGV: now, half_life, bucket, buckets, bucket_ttl, state_ttl, reasoning,
--       harvest, single, template, prompt, long_half_life.
-- Returns: { decayed state fields..., tier, requests, templates, prompts,
--            hours, long requests, long reasoning, days }, numbers as strings.
-- Numbers are stored and returned with 17 significant digits: they read
-- back as the very same doubles, in Lua and in Python.
local function num(x) return string.format('%.17g', x) end

local now = tonumber(ARGV[1])
local half_life = tonumber(ARGV[2])
local bucket = tonumber(ARGV[3])
local buckets = tonumber(ARGV[4])
local bucket_ttl = tonumber(ARGV[5])
local state_ttl = tonumber(ARGV[6])

local key = KEYS[1]
local f = redis.call('HMGET', key, 't', 'first', 'seen', 'n', 'rs', 'hv', 'st', 'inp', 'out',
  'ans', 'gc', 'gm', 'gv', 'tier', 'ln', 'lr', 'dc', 'dl')
local t = tonumber(f[1]) or now
local first = tonumber(f[2]) or now
local seen = tonumber(f[3])
local decay = 1.0
local long = 1.0
if now > t then
  decay = math.pow(2, -(now - t) / half_life)
  long = math.pow(2, -(now - t) / tonumber(ARGV[12]))
else
  now = t  -- a replica's clock behind the last writer's: never decay backwards
end
local ln = (tonumber(f[15]) or 0) * long + 1
local lr = (tonumber(f[16]) or 0) * long + tonumber(ARGV[7])
local dc = tonumber(f[17]) or 0
local dl = tonumber(f[18]) or -1
local day = math.floor(now / 86400)
if day > dl then
  dc = dc + 1
  dl = day
end
local function d(value) return (tonumber(value) or 0) * decay end
local n = d(f[4]) + 1
local rs = d(f[5]) + tonumber(ARGV[7])
local hv = d(f[6]) + tonumber(ARGV[8])
local st = d(f[7]) + tonumber(ARGV[9])
local inp, out, ans = d(f[8]), d(f[9]), d(f[10])
-- Gaps between requests: running mean and variance of their log.
local gc, gm, gv = tonumber(f[11]) or 0, tonumber(f[12]) or 0, tonumber(f[13]) or 0
if seen ~= nil then
  local gap = math.log(math.max(tonumber(ARGV[1]) - seen, 0) + 0.01)
  gc = gc + 1
  local alpha = math.max(0.05, 1 / gc)
  local delta = gap - gm
  gm = gm + alpha * delta
  gv = (1 - alpha) * (gv + alpha * delta * delta)
end
local hour = math.floor(now / 3600) % 24
redis.call('HSET', key, 't', num(now), 'first', num(first), 'seen', ARGV[1],
  'n', num(n), 'rs', num(rs), 'hv', num(hv), 'st', num(st),
  'inp', num(inp), 'out', num(out), 'ans', num(ans),
  'gc', num(gc), 'gm', num(gm), 'gv', num(gv), 'h' .. hour, num(now),
  'ln', num(ln), 'lr', num(lr), 'dc', num(dc), 'dl', num(dl))
redis.call('EXPIRE', key, state_ttl)
local hours = 0
local marks = redis.call('HMGET', key, 'h0', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7', 'h8',
  'h9', 'h10', 'h11', 'h12', 'h13', 'h14', 'h15', 'h16', 'h17', 'h18', 'h19', 'h20', 'h21',
  'h22', 'h23')
for i = 1, 24 do
  local mark = tonumber(marks[i])
  if mark ~= nil and mark > now - 86400 then hours = hours + 1 end
end

-- A caller's own distinct counts, exact: a sorted set of members scored
-- by the newest bucket they were seen in.
local function distinct(key, member)
  redis.call('ZADD', key, 'GT', bucket, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', bucket - buckets)
  redis.call('EXPIRE', key, bucket_ttl)
  return redis.call('ZCARD', key)
end
local counter = KEYS[3 + buckets]
redis.call('INCR', counter)
redis.call('EXPIRE', counter, bucket_ttl)
local requests = 0
for _, value in ipairs(redis.call('MGET', unpack(KEYS, 4, 3 + buckets))) do
  requests = requests + (tonumber(value) or 0)
end
local templates = distinct(KEYS[2], ARGV[10])
local prompts = distinct(KEYS[3], ARGV[11])

return {num(n), num(rs), num(hv), num(st), num(inp),
  num(out), num(ans), num(first), num(gc), num(gm), num(gv),
  f[14] or '', num(requests), num(templates), num(prompts), num(hours),
  num(ln), num(lr), num(dc)}
