-- Spend a request of a clearance's budget and reserve its answer's worst
-- case of output tokens, if both fit, in one step: concurrent requests on
-- one clearance never pass on the same remainder.
-- KEYS[1]: the clearance's meter (hash: r requests, t output tokens charged
--          or reserved), KEYS[2]: the principal's epoch.
-- ARGV: epoch in the token, request budget, token budget (both the budget
--       in force: the lower of the token's and the current policy's),
--       seconds to keep, requests to spend (0 or 1), '1' when the clearance
--       is being opened (only then may its meter be created: a meter gone
--       before the clearance's expiry, evicted or expired on another clock,
--       counts as spent, never as a fresh budget), output tokens to reserve.
-- Returns 1 (held, spent and reserved), 0 (does not fit, or no meter; nothing
-- spent), -1 (revoked by a newer epoch).
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
local meter = redis.call('HMGET', KEYS[1], 'r', 't')
local used = tonumber(meter[1] or '0')
local tokens = tonumber(meter[2] or '0')
local count = tonumber(ARGV[5])
local reserve = tonumber(ARGV[7])
local budget = tonumber(ARGV[3])
if used + count > tonumber(ARGV[2]) or tokens >= budget or tokens + reserve > budget then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'r', count)
if reserve > 0 then
  redis.call('HINCRBY', KEYS[1], 't', reserve)
end
return 1
