-- After the answer: store the caller's tier and explanation, feed back the
-- answer's token counts, and add the caller's own score to the risk of each
-- of its clusters. Mirrors MemoryRisk.record in guardgate/store/risk.py.
--
-- ARGV: prefix, now, half_life, cluster_half_life, state_ttl, cluster_ttl,
--       principal, tier, own score, explanation, input tokens, output tokens
--       (both empty when there is no answer to count), then (kind, value) pairs.
local prefix = ARGV[1]
local now = tonumber(ARGV[2])
local half_life = tonumber(ARGV[3])
local cluster_half_life = tonumber(ARGV[4])
local key = prefix .. ':p:' .. ARGV[7]
local own = tonumber(ARGV[9])

if redis.call('EXISTS', key) == 1 then
  redis.call('HSET', key, 'tier', ARGV[8], 'last', ARGV[10])
  if ARGV[11] ~= '' then
    local f = redis.call('HMGET', key, 't', 'n', 'rs', 'hv', 'st', 'inp', 'out', 'ans')
    local t = tonumber(f[1]) or now
    local decay = 1.0
    if now > t then decay = math.pow(2, -(now - t) / half_life) else now = t end
    local function d(value) return (tonumber(value) or 0) * decay end
    redis.call('HSET', key, 't', tostring(now), 'n', tostring(d(f[2])), 'rs', tostring(d(f[3])),
      'hv', tostring(d(f[4])), 'st', tostring(d(f[5])),
      'inp', tostring(d(f[6]) + tonumber(ARGV[11])), 'out', tostring(d(f[7]) + tonumber(ARGV[12])),
      'ans', tostring(d(f[8]) + 1))
  end
end
now = tonumber(ARGV[2])
for i = 13, #ARGV, 2 do
  local agg = prefix .. ':a:' .. ARGV[i] .. ':' .. ARGV[i + 1]
  local f = redis.call('HMGET', agg, 't', 's', 'c')
  local t = tonumber(f[1]) or now
  local decay = 1.0
  if now > t then decay = math.pow(2, -(now - t) / cluster_half_life) end
  local s = (tonumber(f[2]) or 0) * decay + own
  local c = (tonumber(f[3]) or 0) * decay + 1
  redis.call('HSET', agg, 't', tostring(math.max(now, t)), 's', tostring(s), 'c', tostring(c))
  redis.call('EXPIRE', agg, tonumber(ARGV[6]))
end
return 1
