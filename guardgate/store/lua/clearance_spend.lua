-- Spend requests of a clearance's budget, if the clearance still holds.
-- KEYS[1]: the clearance's meter (hash: r requests, t output tokens),
-- KEYS[2]: the principal's epoch.
-- ARGV: epoch in the token, request budget, token budget, seconds to keep,
--       requests to spend (0 or 1), '1' when the clearance is being opened
--       (only then may its meter be created: a meter gone before the
--       clearance's expiry, evicted or expired on another clock, counts as
--       spent, never as a fresh budget).
-- Returns 1 (held), 0 (budget used up, or no meter), -1 (revoked by a newer epoch).
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) then
  return -1
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[6] ~= '1' then
    return 0
  end
  redis.call('HSET', KEYS[1], 'r', 0, 't', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
local used = redis.call('HINCRBY', KEYS[1], 'r', tonumber(ARGV[5]))
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if used > tonumber(ARGV[2]) or tokens >= tonumber(ARGV[3]) then
  return 0
end
return 1
