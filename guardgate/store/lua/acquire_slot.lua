-- Take one in-flight slot if fewer than the limit are held.
-- KEYS[1]: sorted set of slot holders, scored by lease expiry (ms)
-- ARGV[1]: now (ms), ARGV[2]: lease (ms), ARGV[3]: limit, ARGV[4]: holder id
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
