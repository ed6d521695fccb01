"""The randomized fault soak: ``python -m bench.soak`` (see docs/soak.md)."""
