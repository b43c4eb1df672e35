-- Settle an answer on its clearance's meter, while the meter lives: add the
-- answer's output tokens less what the request reserved (negative: the
-- unused part of the reservation goes back).
-- KEYS[1]: the clearance's meter; ARGV[1]: the difference, in tokens
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], 't', ARGV[1])
end
return 0
