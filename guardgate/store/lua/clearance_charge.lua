-- Charge an answer's output tokens to a clearance's meter, while it lives.
-- KEYS[1]: the clearance's meter; ARGV[1]: tokens
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], 't', ARGV[1])
end
return 0
