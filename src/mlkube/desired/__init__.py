"""PURE. What should run, derived once from a validated spec; both backends act on it.

The spec says what the user wants; this package says what that means, once, so the local
backend and the Kubernetes renderer cannot read one spec in two ways:

- ``revision``: the revision template (the fields whose change needs new replicas) and its
  hash: a local revision is cut exactly when the cluster's pod template hash changes;
- ``scaling``: the autoscaling policy with every default resolved (HPA ``behavior``, sync
  period), which the local loop runs and the HPA/KEDA objects carry;
- ``traffic``: the replica split and traffic weights of every rollout step (one rounding
  rule) and the header A/B route (one meaning);
- ``capabilities``: for every spec field and each backend, honoured, approximated (how) or
  ignored (why); every such warning that the CLI prints comes from it.

No I/O, no clock: an import-linter contract keeps it that way.
"""
