"""Shared helpers of the Kubernetes backend tests.

The suite runs with ``--import-mode=importlib``, where a test module cannot import a sibling
module by name; the helpers here (``k8s_validation``, ``k8s_crd_schemas``, ``k8s_apiserver``)
are made importable by putting this folder on ``sys.path`` once, before collection.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
