-- After the answer: store the caller's tier and explanation and feed back
-- the answer's token counts. Mirrors MemoryRisk.record in
-- guardgate/store/risk.py. The caller's rank among the riskiest and its
-- count among its clusters' risky members are plain commands sent with it
-- (RedisRisk.record): they live in other hash slots.
--
-- KEYS[1]: the caller's hash.
-- ARGV: now, half_life, tier, explanation, input tokens, output tokens (both
--       empty when there is no answer to count), long_half_life.
-- Numbers are stored with 17 significant digits: they read back as the
-- very same doubles, in Lua and in Python.
local function num(x) return string.format('%.17g', x) end

local now = tonumber(ARGV[1])
local half_life = tonumber(ARGV[2])
local key = KEYS[1]

if redis.call('EXISTS', key) == 1 then
  redis.call('HSET', key, 'tier', ARGV[3], 'last', ARGV[4])
  if ARGV[5] ~= '' then
    local f = redis.call('HMGET', key, 't', 'n', 'rs', 'hv', 'st', 'inp', 'out', 'ans',
      'ln', 'lr')
    local t = tonumber(f[1]) or now
    local decay = 1.0
    local long = 1.0
    if now > t then
      decay = math.pow(2, -(now - t) / half_life)
      long = math.pow(2, -(now - t) / tonumber(ARGV[7]))
    else
      now = t
    end
    local function d(value) return (tonumber(value) or 0) * decay end
    redis.call('HSET', key, 't', num(now), 'n', num(d(f[2])), 'rs', num(d(f[3])),
      'hv', num(d(f[4])), 'st', num(d(f[5])),
      'inp', num(d(f[6]) + tonumber(ARGV[5])), 'out', num(d(f[7]) + tonumber(ARGV[6])),
      'ans', num(d(f[8]) + 1),
      'ln', num((tonumber(f[9]) or 0) * long), 'lr', num((tonumber(f[10]) or 0) * long))
  end
end
return 1
