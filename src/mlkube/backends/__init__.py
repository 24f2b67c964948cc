"""Backends: how a spec is acted on, locally or on Kubernetes."""
