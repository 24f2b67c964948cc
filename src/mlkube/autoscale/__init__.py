"""mlkube.autoscale."""
