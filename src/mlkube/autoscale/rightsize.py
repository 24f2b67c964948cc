"""``mlkube recommend``: usage samples → requests, limits and an autoscaling target.

Pure: ``recommend`` takes samples (from a file, or from a running local deployment through
the controller's ``GET /usage``) and returns numbers; ``parse_samples`` reads a samples
document already loaded from JSON; and ``apply_to_yaml`` rewrites spec text, keeping
everything else in the file as it was.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from mlkube.autoscale.presets import TARGET_FRACTION
from mlkube.autoscale.profile import Profile
from mlkube.autoscale.vpa import (
    OomEvent,
    ResourceRecommendation,
    UsageSample,
    capacity_at_slo,
    recommend_resources,
)
from mlkube.errors import MlkubeError
from mlkube.spec import ModelDeployment

MI = 1024 * 1024


class SamplesError(MlkubeError):
    """A samples file that cannot be used."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Everything ``mlkube recommend`` suggests."""

    resources: ResourceRecommendation
    cpu_request_milli: int
    memory_request_bytes: int
    cpu_limit_milli: int | None
    memory_limit_bytes: int | None
    rps_target: float | None
    """Per-replica requests/s for an ``rps`` metric (None: no capacity data)."""
    capacity_at_slo_rps: float | None
    slo_ms: float
    machine: tuple[float, int] | None = None
    """(cores, bytes) of the machine the replicas run on: no bound is reported above it."""

    def to_json(self) -> dict[str, Any]:
        """A plain dict for ``-o json``: quantities as Kubernetes writes them.

        With little history the VPA's bounds are very wide (the upper one is multiplied by
        1 + 1/days of history); an upper bound above the machine is reported as the machine,
        with ``upperCapped`` saying so.
        """
        r = self.resources
        cores, memory = self.machine if self.machine is not None else (math.inf, math.inf)
        return {
            "cpu": {
                "lower": cpu_text(_milli(r.cpu.lower)),
                "target": cpu_text(_milli(r.cpu.target)),
                "upper": cpu_text(_milli(min(r.cpu.upper, cores))),
                "upperCapped": r.cpu.upper > cores,
            },
            "memory": {
                "lower": memory_text(round(r.memory.lower)),
                "target": memory_text(round(r.memory.target)),
                "upper": memory_text(round(min(r.memory.upper, memory))),
                "upperCapped": r.memory.upper > memory,
            },
            "confidenceDays": round(r.confidence_days, 4),
            "samples": r.samples,
            "requests": {
                "cpu": cpu_text(self.cpu_request_milli),
                "memory": memory_text(self.memory_request_bytes),
            },
            "limits": {
                k: v
                for k, v in (
                    (
                        "cpu",
                        None if self.cpu_limit_milli is None else cpu_text(self.cpu_limit_milli),
                    ),
                    (
                        "memory",
                        None
                        if self.memory_limit_bytes is None
                        else memory_text(self.memory_limit_bytes),
                    ),
                )
                if v is not None
            },
            "autoscaling": None
            if self.rps_target is None
            else {"type": "rps", "target": self.rps_target},
            "capacityAtSloRps": None
            if self.capacity_at_slo_rps is None
            else round(self.capacity_at_slo_rps, 2),
            "sloMs": self.slo_ms,
        }


def samples_from_profile(profile: Profile) -> tuple[UsageSample, ...]:
    """A load test's steps within the SLO as usage samples: requests sized for a replica that
    serves its capacity at the SLO. Pure. Without such a step, the first one."""
    within = [p for p in profile.points if p.latency_p95_ms <= profile.slo_ms] or list(
        profile.points[:1]
    )
    if not within:  # a profile without its steps: its summary at the capacity at the SLO
        cpu = profile.idle_cpu_cores + profile.cpu_per_request * profile.capacity_at_slo_rps
        return (
            UsageSample(
                at=0.0,
                cpu_cores=cpu,
                memory_bytes=profile.memory_bytes,
                requests_per_second=profile.capacity_at_slo_rps,
                latency_p95_ms=profile.slo_ms,
            ),
        )
    return tuple(
        UsageSample(
            at=60.0 * index,
            cpu_cores=point.cpu_cores,
            memory_bytes=point.memory_bytes,
            requests_per_second=point.requests_per_second,
            latency_p95_ms=point.latency_p95_ms,
        )
        for index, point in enumerate(within)
    )


def _milli(cores: float) -> int:
    return max(1, math.ceil(cores * 1000))


def cpu_text(milli: int) -> str:
    """Millicores as a Kubernetes quantity."""
    return f"{milli // 1000}" if milli % 1000 == 0 else f"{milli}m"


def memory_text(value: int) -> str:
    """Bytes as a whole number of Mi."""
    return f"{math.ceil(value / MI)}Mi"


def parse_samples(data: Any, source: str) -> tuple[tuple[UsageSample, ...], tuple[OomEvent, ...]]:
    """``{"samples": [{"t", "cpuCores", "memoryBytes", "cpuRequestCores", "rps", "latencyP95Ms"}],
    "ooms": [{"t", "memoryBytes", "memoryRequestBytes"?}]}`` (or just the samples list); other
    keys (``GET /usage`` adds ``replica``) are ignored."""
    raw_samples = data.get("samples") if isinstance(data, dict) else data
    raw_ooms = data.get("ooms", []) if isinstance(data, dict) else []
    if not isinstance(raw_samples, list) or not raw_samples:
        raise SamplesError(f"{source}: expected a non-empty list under 'samples'")
    try:
        samples = tuple(
            UsageSample(
                at=float(s["t"]),
                cpu_cores=_opt(s.get("cpuCores")),
                memory_bytes=None if s.get("memoryBytes") is None else int(s["memoryBytes"]),
                cpu_request_cores=_opt(s.get("cpuRequestCores")),
                requests_per_second=_opt(s.get("rps")),
                latency_p95_ms=_opt(s.get("latencyP95Ms")),
            )
            for s in raw_samples
        )
        ooms = tuple(
            OomEvent(float(o["t"]), int(o["memoryBytes"]), _opt_int(o.get("memoryRequestBytes")))
            for o in raw_ooms
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SamplesError(f"{source}: bad sample ({exc!r}); each needs 't' in seconds") from exc
    for s in samples:
        for name, value in (("cpuCores", s.cpu_cores), ("memoryBytes", s.memory_bytes)):
            if value is not None and value < 0:
                raise SamplesError(
                    f"{source}: {name} must not be negative, got {value} at t={s.at}"
                )
    return samples, ooms


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def observed(samples: tuple[UsageSample, ...]) -> dict[str, Any]:
    """What the samples saw, beside the recommendation: medians and peaks, the time span."""
    cpu = sorted(s.cpu_cores for s in samples if s.cpu_cores is not None)
    memory = sorted(s.memory_bytes for s in samples if s.memory_bytes is not None)
    times = [s.at for s in samples]
    return {
        "samples": len(samples),
        "seconds": (max(times) - min(times)) if times else 0.0,
        "cpuCoresMedian": _median(cpu),
        "cpuCoresMax": cpu[-1] if cpu else None,
        "memoryBytesMedian": _median(memory),
        "memoryBytesMax": memory[-1] if memory else None,
    }


def _median(values: list[float] | list[int]) -> float | None:
    if not values:
        return None
    mid = len(values) // 2
    return float(values[mid]) if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0


def recommend(
    samples: tuple[UsageSample, ...],
    ooms: tuple[OomEvent, ...],
    *,
    deployment: ModelDeployment | None,
    slo_ms: float,
    profile: Profile | None = None,
    machine: tuple[float, int] | None = None,
) -> Recommendation:
    """VPA-style requests (limits keep the spec's limit/request ratio) and the rps target."""
    resources = recommend_resources(samples, ooms)
    cpu_milli = max(1, math.ceil(resources.cpu.target * 1000))
    memory = math.ceil(resources.memory.target)
    cpu_limit = memory_limit = None
    if deployment is not None:
        req, lim = deployment.spec.resources.requests, deployment.spec.resources.limits
        old_cpu, old_cpu_lim = req.get("cpu"), lim.get("cpu")
        if old_cpu_lim is not None:
            ratio = float(old_cpu_lim.value / old_cpu.value) if old_cpu and old_cpu.value else 1.0
            cpu_limit = max(cpu_milli, math.ceil(cpu_milli * ratio))
        old_mem, old_mem_lim = req.get("memory"), lim.get("memory")
        if old_mem_lim is not None:
            ratio = float(old_mem_lim.value / old_mem.value) if old_mem and old_mem.value else 1.0
            memory_limit = max(memory, math.ceil(memory * ratio))
    capacity = (
        profile.capacity_at_slo_rps if profile is not None else capacity_at_slo(samples, slo_ms)
    )
    target = None if not capacity else round(TARGET_FRACTION * capacity, 2)
    return Recommendation(
        resources, cpu_milli, memory, cpu_limit, memory_limit, target, capacity, slo_ms, machine
    )


def apply_to_yaml(text: str, rec: Recommendation) -> str:
    """The spec text with requests, limits and the rps target replaced; the rest untouched."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the Kubernetes style our examples use
    documents = list(yaml.load_all(text))
    target = next(
        (d for d in documents if isinstance(d, dict) and d.get("kind") == "ModelDeployment"), None
    )
    if target is None:
        raise MlkubeError("the spec file holds no ModelDeployment to apply the recommendation to")
    spec = target.setdefault("spec", CommentedMap())
    resources = spec.setdefault("resources", CommentedMap())
    requests = resources.setdefault("requests", CommentedMap())
    requests["cpu"] = cpu_text(rec.cpu_request_milli)
    requests["memory"] = memory_text(rec.memory_request_bytes)
    if rec.cpu_limit_milli is not None or rec.memory_limit_bytes is not None:
        limits = resources.setdefault("limits", CommentedMap())
        if rec.cpu_limit_milli is not None:
            limits["cpu"] = cpu_text(rec.cpu_limit_milli)
        if rec.memory_limit_bytes is not None:
            limits["memory"] = memory_text(rec.memory_limit_bytes)
    if rec.rps_target is not None:
        _set_rps_target(spec, rec.rps_target)
    out = io.StringIO()
    if len(documents) == 1:
        yaml.dump(documents[0], out)
    else:
        yaml.dump_all(documents, out)
    return out.getvalue()


def _set_rps_target(spec: Any, target: float) -> None:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    autoscaling = spec.setdefault("autoscaling", CommentedMap())
    metrics = autoscaling.get("metrics")
    if metrics is None:
        metrics = CommentedSeq([CommentedMap({"type": "cpu", "targetUtilization": 70})])
        autoscaling["metrics"] = metrics
    for metric in metrics:
        if isinstance(metric, dict) and metric.get("type") == "rps":
            metric["target"] = target
            return
    entry = CommentedMap({"type": "rps", "target": target})
    siblings_flow = [m.fa.flow_style() for m in metrics if isinstance(m, CommentedMap)]
    if siblings_flow and all(siblings_flow):
        entry.fa.set_flow_style()
    metrics.append(entry)
