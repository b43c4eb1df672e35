-- The caught ledger: one fingerprint of a caller caught at the intel
-- section's min_tier or above. Mirrors MemoryLedger.note in
-- guardgate/store/ledger.py. The ledger's index (its fingerprints by when
-- last caught) is a plain command sent with it (RedisLedger.note): it lives
-- in another hash slot.
--
-- KEYS[1]: the fingerprint's hash; KEYS[2]: its sketch (the smallest
--          hashes of the principals caught with it), in the same hash slot.
-- ARGV: now, tier, accounts, risky accounts (the cluster's, in its window),
--       the principal's hash, sketch size, ttl (seconds), the number of
--       signals then each signal's name, the number of demand values then
--       each one's name and value.
local h, k = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])

local first = tonumber(redis.call('HGET', h, 'first'))
if first == nil or now < first then
  redis.call('HSET', h, 'first', ARGV[1])
end
local last = tonumber(redis.call('HGET', h, 'last'))
if last == nil or now > last then
  redis.call('HSET', h, 'last', ARGV[1])
end
local accounts = tonumber(ARGV[3])
local held = tonumber(redis.call('HGET', h, 'accounts'))
if held == nil or accounts >= held then
  -- The broadest view of the cluster: the window that held the most accounts.
  redis.call('HSET', h, 'accounts', ARGV[3], 'risky', ARGV[4])
end
local field = 't:' .. ARGV[2]
local seen = tonumber(redis.call('HGET', h, field))
if seen == nil or now > seen then
  redis.call('HSET', h, field, ARGV[1])
end
redis.call('HINCRBY', h, 'requests', 1)

redis.call('ZADD', k, ARGV[5], ARGV[5])
redis.call('ZREMRANGEBYRANK', k, tonumber(ARGV[6]), -1)

local i = 9
for _ = 1, tonumber(ARGV[8]) do
  redis.call('HINCRBY', h, 's:' .. ARGV[i], 1)
  i = i + 1
end
local demand = tonumber(ARGV[i])
i = i + 1
for _ = 1, demand do
  redis.call('HINCRBYFLOAT', h, 'd:' .. ARGV[i], ARGV[i + 1])
  i = i + 2
end

local ttl = tonumber(ARGV[7])
redis.call('EXPIRE', h, ttl)
redis.call('EXPIRE', k, ttl)
return 1
