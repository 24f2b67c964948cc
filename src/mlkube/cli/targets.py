"""How a shared command picks its backend: the target options and the one factory.

``backend_options`` adds ``--target``, ``--state-dir``, ``--context`` and ``--namespace`` to a
command and hands its callback a ready ``backend`` instead. The backend comes from
``make_backend``, or from the factory a caller put in ``ctx.obj["backend_factory"]`` (tests:
``CliRunner().invoke(cli, args, obj={"backend_factory": ...})``). The Kubernetes backend is
imported only when chosen: its client is an optional extra.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from mlkube.backends.base import Backend, BackendFactory, BackendSelection, TargetName

F = TypeVar("F", bound=Callable[..., Any])

BACKEND_FACTORY = "backend_factory"
"""The ``ctx.obj`` key of a ``BackendFactory`` that replaces ``make_backend``."""


def make_backend(selection: BackendSelection) -> Backend:
    """The backend the options chose: the local controller or a Kubernetes cluster."""
    if selection.target == "kubernetes":
        from mlkube.backends.kubernetes.backend import KubernetesBackend

        return KubernetesBackend(
            selection.context, selection.namespace, prometheus_url=selection.prometheus_url
        )
    from mlkube.backends.local.backend import LocalBackend

    return LocalBackend(selection.state_dir)


def open_backend(selection: BackendSelection) -> Backend:
    """The backend for ``selection``, made by the context's factory when it has one."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    factory: BackendFactory = make_backend
    if isinstance(obj, dict) and obj.get(BACKEND_FACTORY) is not None:
        factory = cast(BackendFactory, obj[BACKEND_FACTORY])
    return factory(selection)


def state_dir_option(func: F) -> F:
    """``--state-dir`` (env MLKUBE_STATE_DIR): where the local controller keeps its state."""
    return click.option(
        "--state-dir",
        default=None,
        envvar="MLKUBE_STATE_DIR",
        help="local: where the controller keeps its state [default: ~/.mlkube].",
    )(func)


def backend_options(func: Callable[..., None]) -> Callable[..., None]:
    """Add the target options to a command; its callback receives ``backend=`` instead."""

    @functools.wraps(func)
    def with_backend(
        *args: Any,
        target: TargetName,
        state_dir: str | None,
        context: str | None,
        namespace: str | None,
        **kwargs: Any,
    ) -> None:
        prometheus = kwargs.pop("prometheus", None)
        selection = BackendSelection(target, state_dir, context, namespace, prometheus)
        func(*args, backend=open_backend(selection), **kwargs)

    decorated: Callable[..., None] = state_dir_option(with_backend)
    decorated = click.option(
        "--namespace",
        "-n",
        default=None,
        help="kubernetes: the namespace [default: the context's].",
    )(decorated)
    decorated = click.option(
        "--context", default=None, help="kubernetes: the kubeconfig context [default: current]."
    )(decorated)
    return click.option(
        "--target",
        type=click.Choice(["local", "kubernetes"]),
        default="local",
        show_default=True,
        help="Where the deployment runs.",
    )(decorated)


def prometheus_option(func: F) -> F:
    """``--prometheus URL`` (env MLKUBE_PROMETHEUS_URL) for the rollout commands: the
    cluster's Prometheus that canary analysis queries. Put it under ``backend_options``."""
    return click.option(
        "--prometheus",
        default=None,
        envvar="MLKUBE_PROMETHEUS_URL",
        metavar="URL",
        help="kubernetes: the cluster's Prometheus (e.g. http://localhost:9090 through "
        "kubectl port-forward); canary analysis needs it.",
    )(func)
