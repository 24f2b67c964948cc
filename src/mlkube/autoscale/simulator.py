"""Replay a request-rate trace through a replica model and a policy, second by second.

Pure and deterministic: no clock, no randomness. The replica model is a fluid queue. Each
ready replica serves up to ``capacity_rps``; excess arrivals wait in a backlog. A request's
p95 latency is an M/M/1 estimate, ``ln(20) · S / (1 - ρ)`` with S the base service time and
ρ the utilization, plus the backlog's wait. New replicas are ready ``startup_s`` after they are
asked for. The policy sees the same ``Observation`` the local loop builds, at its own tick, and
a ``LoadHistory``: the arriving request rate of every past second (what the load balancer
counts) and the median spawn-to-ready time of the replicas that became ready.

Warm standby (``autoscaling.standby``): the pool the decision asks for is started like any
replica and serves nothing; a scale-up promotes pool replicas first (serving from the next
second, ``PROMOTION_S``), then starts cold ones; a scale-down stops serving replicas and a
pool that is short refills with cold starts (as the local controller and the Kubernetes
standby Deployment do: no replica is demoted into the pool). Pool replicas count in the
replica-seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mlkube.autoscale.api import Observation, PolicyState, ReplicaMetrics
from mlkube.autoscale.history import LoadHistory, Startups, measured_startups, startup_seconds
from mlkube.autoscale.policy import decide
from mlkube.spec.autoscaling import AutoscalingSpec

P95_FACTOR = math.log(20)
"""p95 of an exponential response time, in multiples of its mean."""

PROMOTION_S = 0.2
"""Standby to serving: the load balancer adds an already-ready replica (well under a second);
with one-second steps the promoted replica serves from the next second."""

GOLDEN = (math.sqrt(5) - 1) / 2
"""Steps of the low-discrepancy sequence that spreads start-ups between replicas."""

MAX_UTILIZATION = 0.99
"""ρ is capped here so a saturated replica's latency stays finite (the backlog adds the rest)."""


@dataclass(frozen=True, slots=True)
class ReplicaModel:
    """How one replica behaves under load (from options, the spec, or a profile)."""

    capacity_rps: float = 20.0
    """Most requests per second one replica serves."""
    base_latency_ms: float = 50.0
    """Service time of one request on an idle replica."""
    startup_s: float = 5.0
    """From asking for a replica to it being ready (the median over replicas)."""
    startup_spread: float = 0.0
    """Replica k's start-up is ``startup_s × (1 + spread × (u_k − 0.5))``, u_k spread evenly
    over [0, 1) (golden-ratio sequence): deterministic variation between replicas."""
    cpu_per_request: float = 0.05
    """Core-seconds one request costs."""
    idle_cpu_cores: float = 0.02
    cpu_request_cores: float | None = 0.5
    """``resources.requests.cpu`` (HPA's utilization is relative to it)."""
    cpu_limit_cores: float | None = 2.0
    memory_bytes: int = 300 * 2**20
    memory_request_bytes: int | None = 512 * 2**20
    slo_ms: float = 500.0
    """The latency SLO the report counts against (p95)."""

    def startup_of(self, k: int) -> float:
        """The start-up of the k-th replica started (k from 1)."""
        u = (k * GOLDEN) % 1.0
        return max(0.0, self.startup_s * (1.0 + self.startup_spread * (u - 0.5)))

    def p95_ms(self, utilization: float) -> float:
        """Steady-state p95 latency at ``utilization`` (0 ≤ ρ)."""
        rho = min(max(utilization, 0.0), MAX_UTILIZATION)
        return P95_FACTOR * self.base_latency_ms / (1.0 - rho)

    def capacity_at_slo(self) -> float:
        """Requests per second one replica serves with p95 at the SLO."""
        rho = 1.0 - P95_FACTOR * self.base_latency_ms / self.slo_ms
        return max(0.0, min(rho, MAX_UTILIZATION)) * self.capacity_rps

    def in_flight(self, rps: float) -> float:
        """Little's law: requests in flight on one replica serving ``rps``."""
        rho = min(rps / self.capacity_rps, MAX_UTILIZATION)
        return rps * self.base_latency_ms / 1000.0 / (1.0 - rho)


@dataclass(frozen=True, slots=True)
class SimPolicy:
    """A named autoscaling configuration to replay."""

    name: str
    spec: AutoscalingSpec
    metrics_resolution: float = 0.0
    """Seconds between metric scrapes the policy sees; 0: fresh averages at every tick.
    HPA reads metrics-server, which scrapes every 15 s (``--metric-resolution``) on its own
    schedule, so its CPU figure is 0-15 s old on top of the 15 s sync period."""
    metrics_phase: float = 7.0
    """Offset of the scrape schedule against the trace (seconds)."""


@dataclass(frozen=True, slots=True)
class Second:
    """What happened in one second."""

    t: int
    rate: float
    replicas: int
    ready: int
    standby: int
    """Warm standby replicas (starting or warm), not serving."""
    served: float
    backlog: float
    p95_ms: float
    over_slo: bool


@dataclass(frozen=True, slots=True)
class SimResult:
    """The outcome of one policy on one trace."""

    policy: str
    trace: str
    seconds: tuple[Second, ...]
    decisions: tuple[tuple[int, int, str], ...]
    """(time, desired, reason) for every decision that changed the count."""

    @property
    def seconds_over_slo(self) -> int:
        """Seconds whose p95 latency exceeded the SLO."""
        return sum(1 for s in self.seconds if s.over_slo)

    @property
    def replica_seconds(self) -> float:
        """Replicas alive (starting, ready or standby) summed over seconds: the cost."""
        return float(sum(s.replicas + s.standby for s in self.seconds))

    @property
    def standby_seconds(self) -> float:
        """The standby pool's share of ``replica_seconds``."""
        return float(sum(s.standby for s in self.seconds))

    @property
    def max_backlog(self) -> float:
        """The longest queue, in requests."""
        return max((s.backlog for s in self.seconds), default=0.0)

    def summary(self) -> dict[str, float | int | str]:
        """The headline figures."""
        waits = sorted(s.p95_ms for s in self.seconds if s.rate > 0)
        p99_of_p95 = waits[min(len(waits) - 1, int(0.99 * len(waits)))] if waits else 0.0
        return {
            "policy": self.policy,
            "trace": self.trace,
            "secondsOverSlo": self.seconds_over_slo,
            "replicaSeconds": self.replica_seconds,
            "standbySeconds": self.standby_seconds,
            "maxReplicas": max((s.replicas for s in self.seconds), default=0),
            "meanReplicas": round(self.replica_seconds / max(1, len(self.seconds)), 3),
            "maxBacklog": round(self.max_backlog, 3),
            "p99OfP95Ms": round(p99_of_p95, 1),
            "scaleChanges": len(self.decisions),
        }


@dataclass
class _Replica:
    name: str
    started_at: float
    ready_at: float

    promoted: bool = False
    """Came from the standby pool: its spawn-to-ready is no start-up measurement."""


@dataclass
class _World:
    model: ReplicaModel
    replicas: list[_Replica]
    standby: list[_Replica] = field(default_factory=list)
    backlog: float = 0.0
    counter: int = 0
    history: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    """Per second, per ready replica: (cpu cores, in-flight, rps, queue, p95 ms)."""

    def _new(self, now: float) -> _Replica:
        self.counter += 1
        return _Replica(f"r{self.counter}", now, now + self.model.startup_of(self.counter))

    def add(self, now: float) -> None:
        """One more serving replica: a standby one if any (warm first), else a cold start."""
        if self.standby:
            pick = min(self.standby, key=lambda r: (r.ready_at, r.started_at))
            self.standby.remove(pick)
            pick.ready_at = max(pick.ready_at, now + PROMOTION_S)
            pick.promoted = True
            self.replicas.append(pick)
            return
        self.replicas.append(self._new(now))

    def remove(self, count: int, now: float) -> None:
        """``count`` fewer serving replicas, stopped (unready ones first, then the newest).

        As the local controller and the Kubernetes pool do: a stopped serving replica does
        not go back into the standby pool, which refills with a cold start (``keep_standby``).
        """
        order = sorted(self.replicas, key=lambda r: (r.ready_at <= now, r.started_at))
        for victim in order[:count]:
            self.replicas.remove(victim)

    def keep_standby(self, pool: int, now: float) -> None:
        """Start or stop pool replicas so ``pool`` of them exist (unready ones stop first)."""
        while len(self.standby) < pool:
            self.standby.append(self._new(now))
        if len(self.standby) > pool:
            order = sorted(self.standby, key=lambda r: (r.ready_at <= now, r.started_at))
            for victim in order[: len(self.standby) - pool]:
                self.standby.remove(victim)


def simulate(
    policy: SimPolicy, rates: tuple[float, ...], model: ReplicaModel, *, trace: str = "trace"
) -> SimResult:
    """Replay ``rates`` (requests per second, one per second) under ``policy``."""
    spec = policy.spec
    tick = spec.tick_seconds()
    world = _World(model, [])
    for _ in range(max(spec.min_replicas, 1) if spec.scale_to_zero is None else spec.min_replicas):
        world.add(-1000.0)
    state: PolicyState | None = None
    seconds: list[Second] = []
    decisions: list[tuple[int, int, str]] = []
    next_tick = 0.0
    pending_since_zero = 0.0
    arrivals: list[tuple[float, float]] = []
    startups: Startups = ()
    for t, rate in enumerate(rates):
        now = float(t)
        second = _advance(world, t, rate)
        seconds.append(second)
        arrivals.append((now + 1, rate))
        pending_since_zero = world.backlog if second.ready == 0 else 0.0
        if now + 1 >= next_tick:
            next_tick = now + 1 + tick
            seen = _scraped_upto(policy, now + 1)
            obs = observe(world, now + 1, tick, pending=pending_since_zero, upto=seen)
            cold = [r for r, w in zip(obs.replicas, world.replicas, strict=True) if not w.promoted]
            startups = measured_startups(cold, startups)
            history = LoadHistory(now + 1, arrivals, startup_seconds(startups))
            decision, state = decide(spec, obs, state, history)
            current = len(world.replicas)
            if decision.desired_replicas > current:
                for _ in range(decision.desired_replicas - current):
                    world.add(now + 1)
            elif decision.desired_replicas < current:
                world.remove(current - decision.desired_replicas, now + 1)
            world.keep_standby(decision.standby, now + 1)
            if decision.desired_replicas != current:
                decisions.append((t + 1, decision.desired_replicas, decision.reason))
    return SimResult(policy.name, trace, tuple(seconds), tuple(decisions))


def _scraped_upto(policy: SimPolicy, now: float) -> int:
    """How many seconds of history the policy's metrics pipeline has delivered by ``now``."""
    if policy.metrics_resolution <= 0:
        return int(now)
    res, phase = policy.metrics_resolution, policy.metrics_phase
    last = math.floor((now - phase) / res) * res + phase
    return max(0, int(last))


def _advance(world: _World, t: int, rate: float) -> Second:
    model = world.model
    ready = sum(1 for r in world.replicas if r.ready_at <= t)
    capacity = ready * model.capacity_rps
    offered = world.backlog + rate
    served = min(offered, capacity)
    world.backlog = offered - served
    per_replica_rps = served / ready if ready else 0.0
    utilization = per_replica_rps / model.capacity_rps if ready else 1.0
    wait_ms = 1000.0 * world.backlog / capacity if capacity > 0 else math.inf
    p95 = model.p95_ms(utilization) + wait_ms if ready else math.inf
    busy = rate > 0 or world.backlog > 0
    over = busy and p95 > model.slo_ms
    cpu = model.idle_cpu_cores + per_replica_rps * model.cpu_per_request
    if model.cpu_limit_cores is not None:
        cpu = min(cpu, model.cpu_limit_cores)
    queue = world.backlog / ready if ready else 0.0
    in_flight = model.in_flight(per_replica_rps) + queue if ready else 0.0
    world.history.append((cpu, in_flight, per_replica_rps, queue, p95 if ready else 0.0))
    shown = p95 if math.isfinite(p95) else 0.0 if not busy else 60_000.0
    return Second(
        t, rate, len(world.replicas), ready, len(world.standby), served, world.backlog, shown, over
    )


def observe(
    world: _World, now: float, window: float, *, pending: float, upto: int | None = None
) -> Observation:
    """What the loop would report at ``now``: averages over ``window`` s of history, ending at
    second ``upto`` (default: now)."""
    span = max(1, int(window))
    end = len(world.history) if upto is None else max(1, min(upto, len(world.history)))
    recent = world.history[max(0, end - span) : end]
    n = max(1, len(recent))
    cpu, in_flight, rps, queue, p95 = (sum(col) / n for col in zip(*recent, strict=True))
    model = world.model
    replicas = []
    for r in world.replicas:
        ready = r.ready_at <= now
        replicas.append(
            ReplicaMetrics(
                name=r.name,
                ready=ready,
                started_at=r.started_at,
                ready_at=r.ready_at if ready else None,
                cpu_cores=cpu if ready else model.idle_cpu_cores,
                memory_bytes=model.memory_bytes,
                in_flight=in_flight if ready else 0.0,
                requests_per_second=rps if ready else 0.0,
                queue_depth=queue if ready else 0.0,
                latency_p95_ms=p95 if ready and rps > 0 else None,
            )
        )
    return Observation(
        now=now,
        current_replicas=len(world.replicas),
        replicas=tuple(replicas),
        cpu_request_cores=model.cpu_request_cores,
        memory_request_bytes=model.memory_request_bytes,
        pending_requests=math.ceil(pending),
    )
