"""The contract between gateways and workers: config, envelope, topology, keys, shard maths.

Nothing in here imports from ``gateway`` or ``worker``.
"""
