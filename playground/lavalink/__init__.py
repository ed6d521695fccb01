"""A Lavalink v4 node emulator (REST + WebSocket), for tests, benchmarks and the playground."""
