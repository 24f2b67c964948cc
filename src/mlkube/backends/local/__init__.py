"""mlkube.backends.local."""
