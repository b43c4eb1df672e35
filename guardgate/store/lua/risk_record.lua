-- After the answer: store the caller's tier and explanation, feed back the
-- answer's token counts, and count the caller as a risky member of each of
-- its clusters when its own score says so. Mirrors MemoryRisk.record in
-- guardgate/store/risk.py.
--
-- ARGV: prefix, now, half_life, bucket, bucket_ttl, risky ('1' or ''),
--       principal, tier, explanation, input tokens, output tokens (both
--       empty when there is no answer to count), score, long_half_life,
--       then (kind, value) pairs. The score also ranks the caller for the operator's list (the
--       10,000 highest are kept).
-- Numbers are stored and returned with 17 significant digits: they read
-- back as the very same doubles, in Lua and in Python.
local function num(x) return string.format('%.17g', x) end

local prefix = ARGV[1]
local now = tonumber(ARGV[2])
local half_life = tonumber(ARGV[3])
local key = prefix .. ':p:' .. ARGV[7]

if redis.call('EXISTS', key) == 1 then
  redis.call('HSET', key, 'tier', ARGV[8], 'last', ARGV[9])
  if ARGV[10] ~= '' then
    local f = redis.call('HMGET', key, 't', 'n', 'rs', 'hv', 'st', 'inp', 'out', 'ans',
      'ln', 'lr')
    local t = tonumber(f[1]) or now
    local decay = 1.0
    local long = 1.0
    if now > t then
      decay = math.pow(2, -(now - t) / half_life)
      long = math.pow(2, -(now - t) / tonumber(ARGV[13]))
    else
      now = t
    end
    local function d(value) return (tonumber(value) or 0) * decay end
    redis.call('HSET', key, 't', num(now), 'n', num(d(f[2])), 'rs', num(d(f[3])),
      'hv', num(d(f[4])), 'st', num(d(f[5])),
      'inp', num(d(f[6]) + tonumber(ARGV[10])), 'out', num(d(f[7]) + tonumber(ARGV[11])),
      'ans', num(d(f[8]) + 1),
      'ln', num((tonumber(f[9]) or 0) * long), 'lr', num((tonumber(f[10]) or 0) * long))
  end
end
local ranked = prefix .. ':scores'
redis.call('ZADD', ranked, ARGV[12], ARGV[7])
redis.call('ZREMRANGEBYRANK', ranked, 0, -10001)
if ARGV[6] == '1' then
  for i = 14, #ARGV, 2 do
    local risky = prefix .. ':r:' .. ARGV[i] .. ':' .. ARGV[i + 1] .. ':' .. ARGV[4]
    redis.call('PFADD', risky, ARGV[7])
    redis.call('EXPIRE', risky, tonumber(ARGV[5]))
  end
end
return 1
