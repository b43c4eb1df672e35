-- Count one caller into its clusters and read back each cluster's accounts
-- and risky accounts over the window, in one call: the HyperLogLog add and
-- counts that guardgate/store/risk.py's MemoryRisk.observe makes in memory.
-- On a single Redis every cluster of a request goes in one call; on a Redis
-- Cluster one call per cluster (its keys share the cluster's hash slot).
--
-- KEYS: per cluster, its account counters one per bucket of the window,
--       oldest first, then its risky-account counters the same way.
-- ARGV: principal, buckets, bucket_ttl.
-- Returns: per cluster, accounts and risky accounts.
local principal = ARGV[1]
local buckets = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local result = {}
for first = 1, #KEYS, 2 * buckets do
  local current = KEYS[first + buckets - 1]
  redis.call('PFADD', current, principal)
  redis.call('EXPIRE', current, ttl)
  result[#result + 1] = redis.call('PFCOUNT', unpack(KEYS, first, first + buckets - 1))
  result[#result + 1] = redis.call('PFCOUNT', unpack(KEYS, first + buckets, first + 2 * buckets - 1))
end
return result
