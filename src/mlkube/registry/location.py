"""Where the registry lives: ``$MLKUBE_REGISTRY``, else ``registry`` in the state directory."""

from __future__ import annotations

import os
from pathlib import Path

REGISTRY_ENV = "MLKUBE_REGISTRY"
STATE_DIR_ENV = "MLKUBE_STATE_DIR"
DEFAULT_STATE_DIR = "~/.mlkube"
"""As ``backends.local.controller.settings`` (a test keeps the two in step): the registry sits
below the backends, so it cannot import their settings."""


def registry_root(state_dir: str | Path | None = None) -> Path:
    """``$MLKUBE_REGISTRY``, else ``STATE_DIR/registry`` (``--state-dir``, else
    ``$MLKUBE_STATE_DIR``, else ``~/.mlkube``)."""
    explicit = os.environ.get(REGISTRY_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    state = str(state_dir) if state_dir else os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
    return Path(state).expanduser().resolve() / "registry"
