"""mlkube.observability."""
