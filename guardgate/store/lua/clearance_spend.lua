-- Spend one request of a clearance's budget, if the clearance still holds.
-- KEYS[1]: the clearance's meter (hash: r requests, t output tokens),
-- KEYS[2]: the principal's epoch.
-- ARGV: epoch in the token, request budget, token budget, seconds to keep.
-- Returns 1 (spent one), 0 (budget used up), -1 (revoked by a newer epoch).
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) then
  return -1
end
local used = redis.call('HINCRBY', KEYS[1], 'r', 1)
if used == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if used > tonumber(ARGV[2]) or tokens >= tonumber(ARGV[3]) then
  return 0
end
return 1
