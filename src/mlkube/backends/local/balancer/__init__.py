"""The local data plane: one balancer process per state directory, outliving the controller."""
