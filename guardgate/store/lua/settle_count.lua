-- Settle a delta on a fixed window's counter. A refund (delta < 0) applies
-- only in the window it was charged in: it must not raise the next window's
-- allowance. What an answer cost beyond its reservation (delta > 0) is owed
-- whatever the window: past its own, it is charged to the one now open.
-- KEYS[1]: the counter, ARGV[1]: delta, ARGV[2]: the charged window's end
-- (unix ms), ARGV[3]: the window's length (ms)
local delta = tonumber(ARGV[1])
local ends = redis.call('PEXPIRETIME', KEYS[1])
if ends == tonumber(ARGV[2]) then
  return redis.call('INCRBY', KEYS[1], delta)
end
if delta > 0 then
  local count = redis.call('INCRBY', KEYS[1], delta)
  if ends < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
  return count
end
return 0
