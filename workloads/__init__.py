"""Dialogue workloads: who says what, how long it takes to say, and when. Never imports `sim`."""
