"""The gateway service: holds a group of Discord shards and publishes their events."""
