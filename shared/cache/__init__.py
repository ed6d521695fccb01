"""The shared Redis cache: written in shard order by gateways, read as hikari models by workers."""
