"""mlkube.backends.kubernetes."""
