"""How long Redis has held the data set it serves: the Lua both young-Redis rules share.

Two rules guard what a Redis that lost its data would hand out wrongly: no free shard lease
while it is younger than a lease TTL and a margin (``gateway.leases``), and every identify
bucket shut for a reservation when the pool's identify memory is missing on a young Redis
(``gateway.identify``). Its uptime tells a restart; it does not tell a failover. A replica that
Sentinel (or a cluster) promoted has been up for days, but it holds only what it had
replicated: a lease or an identify slot written on the old master in the last moments may be
missing. A promotion gives the new master a new replication id (``master_replid``, Redis's
PSYNC2: replication.md, "Replication ID explained"), so each script keeps the id it last saw
(``keys.redis_history``, hash-tagged with the pool's other keys) and counts Redis as new from
the moment it sees another one whose previous id (``master_replid2``, which a promoted replica
sets to its old master's id) is the one it saw: the held time is the shorter of the uptime and
the time since. A master also takes a new id when it creates its backlog (its first replica,
or one after ``repl-backlog-ttl`` without any), with no previous id: nothing was lost, and the
time is kept (a review). A pool whose history is not written yet goes by the uptime alone. When the
id changes the identify memory is dropped too, so the identify rule treats a promotion as it
treats a restart. A Redis whose INFO cannot be read (an ACL without ``@dangerous``, a proxy)
counts as old, as before.
"""

from __future__ import annotations

import typing

#: ``held_ms()``: milliseconds the data set has been held (``nil`` if INFO cannot be read).
#: Prepended to a script whose ``KEYS[2]`` is the pool's identify memory and ``KEYS[3]`` its
#: Redis history (declared keys: a cluster routes the script by them); it writes the history
#: and, on a promotion, deletes the memory. Redis 7 replicates a script's effects, so the
#: ``TIME`` it reads is not replayed on replicas.
HELD_MS: typing.Final = """
local function held_ms()
  local memory_key = KEYS[2]
  local history_key = KEYS[3]
  local ok, server = pcall(redis.call, 'INFO', 'server')
  local up = ok and tonumber(string.match(server, 'uptime_in_seconds:(%d+)')) or nil
  if up == nil then return nil end
  local held = up * 1000
  local ok2, replication = pcall(redis.call, 'INFO', 'replication')
  local id = ok2 and string.match(replication, 'master_replid:(%w+)') or nil
  local previous = ok2 and string.match(replication, 'master_replid2:(%w+)') or nil
  if id == nil then return held end
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local seen = redis.call('HGET', history_key, 'id')
  local since = tonumber(redis.call('HGET', history_key, 'since') or '')
  if seen ~= id or since == nil then
    if seen and seen ~= id and previous == seen then
      since = now  -- the history it continues was another's: a promoted replica
      redis.call('DEL', memory_key)
    elseif seen and seen ~= id then
      since = since or now - held  -- a new backlog on the same master: nothing was lost
    else
      since = now - held  -- never seen (a new pool, an upgrade): its uptime decides
    end
    redis.call('HSET', history_key, 'id', id, 'since', since)
  end
  return math.max(0, math.min(held, now - since))
end
"""
