"""The local controller: the one long-running process that owns every loop of ``mlkube up``.

It reconciles deployments (plan → supervisor), probes readiness, restarts with back-off, runs
rollouts and the autoscaler, serves the load balancers and the token-protected control API.
"""
