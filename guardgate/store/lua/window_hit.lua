-- Charge a fixed window's counter: its count after the charge, and when its
-- window ends (unix ms, the counter's expiry, set by the window's first
-- charge). The end names the window: a settlement made for it applies to it
-- alone (settle_count.lua).
-- KEYS[1]: the counter, ARGV[1]: the window's length (ms), ARGV[2]: the charge
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ends = redis.call('PEXPIRETIME', KEYS[1])
if ends < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ends = redis.call('PEXPIRETIME', KEYS[1])
end
return {count, ends}
