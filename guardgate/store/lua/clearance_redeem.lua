-- Redeem a challenge once: the first redemption wins, atomically (SET NX),
-- across every replica. Returns the principal's clearance epoch, or -1 when
-- the challenge was already redeemed.
-- KEYS[1]: the challenge's redemption record, KEYS[2]: the principal's epoch
-- ARGV[1]: seconds the record is kept (the challenge's remaining lifetime)
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return -1
end
return tonumber(redis.call('GET', KEYS[2]) or '0')
