"""Waiting for Deployments to finish rolling out, as ``kubectl rollout status`` judges it.

``rollout_state`` is pure (a Deployment's JSON in, a verdict out); ``wait_for_rollouts`` is the
thin loop that polls the cluster, reports progress when it changes (with the reasons
``diagnose`` finds while a Deployment is not rolled out) and gives up at a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlkube.backends.kubernetes.client import Cluster
from mlkube.backends.kubernetes.diagnose import Problem, collect, lines
from mlkube.backends.kubernetes.errors import RolloutError
from mlkube.backends.kubernetes.render.manifest import Manifest, kind_info
from mlkube.clock import Clock

POLL_INTERVAL_S = 2.0


@dataclass(frozen=True, slots=True)
class RolloutState:
    """Where a Deployment's rollout stands."""

    done: bool
    failed: bool
    message: str


def rollout_state(deployment: Manifest) -> RolloutState:
    """The rollout verdict for one Deployment object, as kubectl computes it.

    Pure: no I/O.
    """
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    status = deployment.get("status") or {}
    name = meta.get("name", "?")
    if status.get("observedGeneration", 0) < meta.get("generation", 1):
        return RolloutState(False, False, f"{name}: waiting for the controller to see the spec")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == (
            "ProgressDeadlineExceeded"
        ):
            return RolloutState(
                False,
                True,
                f"{name}: exceeded its progress deadline: {condition.get('message', '')}",
            )
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return RolloutState(False, False, f"{name}: {updated} of {wanted} replicas updated")
    if total > updated:
        return RolloutState(
            False, False, f"{name}: {total - updated} old replicas pending termination"
        )
    if available < updated:
        return RolloutState(
            False, False, f"{name}: {available} of {updated} updated replicas available"
        )
    return RolloutState(True, False, f"{name}: rolled out ({available} available)")


async def wait_for_rollouts(
    cluster: Cluster,
    deployments: Sequence[tuple[str, str]],
    *,
    timeout_s: float,
    clock: Clock,
    report: Callable[[str], None],
) -> None:
    """Poll each (namespace, name) Deployment until all are rolled out.

    While one is not, its conditions, its pods' and autoscalers' conditions and recent Warning
    events say why (``diagnose``): each reason is reported once, under the count it explains.
    Raises RolloutError when one fails (progress deadline) or ``timeout_s`` passes first; the
    message carries the last reasons seen.
    """
    deadline = clock.monotonic() + timeout_s
    pending = list(deployments)
    last: dict[tuple[str, str], str] = {}
    why: dict[tuple[str, str], list[Problem]] = {}
    told: set[tuple[tuple[str, str], str]] = set()
    info = kind_info("Deployment")
    while pending:
        still: list[tuple[str, str]] = []
        for namespace, name in pending:
            key = (namespace, name)
            live = await asyncio.to_thread(cluster.get, info, name, namespace)
            state = (
                rollout_state(live)
                if live is not None
                else RolloutState(False, False, f"{name}: not found yet")
            )
            if state.message != last.get(key):
                report(state.message)
                last[key] = state.message
            if live is not None and not state.done:
                why[key] = await asyncio.to_thread(collect, cluster, namespace, live)
                for problem in why[key]:
                    if (key, problem.text()) not in told:
                        told.add((key, problem.text()))
                        for line in lines(problem):
                            report(line)
            if state.failed:
                raise RolloutError(
                    f"rollout of Deployment '{name}' in '{namespace}' failed: {state.message}"
                    + _because([p for p in why.get(key, []) if p.message not in state.message])
                )
            if not state.done:
                still.append(key)
        pending = still
        if not pending:
            return
        if clock.monotonic() >= deadline:
            names = ", ".join(f"{ns}/{n}" for ns, n in pending)
            raise RolloutError(
                f"timed out after {timeout_s:g}s waiting for {names}: "
                + "; ".join(last[key] + _because(why.get(key, [])) for key in pending)
                + " (see `mlkube status` and `mlkube events`)"
            )
        await clock.sleep(POLL_INTERVAL_S)


def _because(found: Sequence[Problem]) -> str:
    return f" (why: {'; '.join(p.text() for p in found)})" if found else ""
