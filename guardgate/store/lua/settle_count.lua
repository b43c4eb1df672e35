-- Add a settlement delta to a rate counter, only while its window lives:
-- a counter whose window has ended must not come back without an expiry.
-- KEYS[1]: the counter, ARGV[1]: delta
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return 0
