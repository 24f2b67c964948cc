"""mlkube.batching."""
