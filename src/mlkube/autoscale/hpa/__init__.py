"""Exact HPA v2 semantics: replica calculator, normalisation and one reconcile."""
