"""``shardline``: the operator's command line (status, dead letters, drain, re-shard plans)."""
