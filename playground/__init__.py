"""A local Discord: the emulator the tests, the benchmarks and the demo run against."""
