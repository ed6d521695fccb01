"""Plugins that ship with Shardline (load them with WORKER_PLUGINS=worker.plugins.core)."""
