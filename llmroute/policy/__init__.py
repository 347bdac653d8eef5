"""Policy: what to choose. Pure functions over snapshots; no I/O, no awaits."""
