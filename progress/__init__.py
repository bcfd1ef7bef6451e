"""Per-batch stake-weighted progress toward quorum."""
