"""The model set: every model a replica serves and each one's loaded versions.

One object answers the question every protocol front end asks first, "which loaded model
version does this request go to?": ``ModelSet.lookup(name, version)`` returns the
``ServedVersion`` (its runtime and batcher) or a reason it cannot: ``NotFound`` (no such
model or version here: 404, gRPC NOT_FOUND) or ``Unavailable`` (known, not serving now:
503 with Retry-After, gRPC UNAVAILABLE). ``require`` is the same, raising the matching
``ServingError``. REST (``serving/app.py``) and gRPC route through it, so both answer the
same for the same name and version.

Rules, as TF Serving and the Open Inference Protocol have them:
- ``version`` None (or "") means the highest-numbered AVAILABLE version;
- the name ``default`` reaches the first model of the spec;
- a version is served only while AVAILABLE: a LOADING one (or a model whose versions are
  all loading) is ``Unavailable``; a failed, unloading or unknown one is ``NotFound``.

Versions are published and retired by the version manager (``serving/versions.py``) on the
event loop's thread; lookups run there too, so a switch is atomic for every request: one
sees either the old set or the new one. Each ``ServedVersion`` counts its requests in
flight, so a retired version can drain before it unloads.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mlkube.batching.batcher import Batcher
from mlkube.errors import ModelNotFoundError, ModelNotReadyError, ServingError
from mlkube.runtimes.base import Batch, Runtime
from mlkube.spec.deployment import DEFAULT_MODEL_ALIAS

Done = Callable[[Batch | None, BaseException | None], None]


class VersionState(enum.StrEnum):
    """A version's state, named as TF Serving's ``ModelVersionStatus.State``.

    A version that failed to load ends in END with an error status (``VersionStatus.error``),
    as TF Serving reports it: it never takes traffic.
    """

    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclass(slots=True)
class VersionStatus:
    """What the status endpoints report about one version."""

    version: int
    state: VersionState = VersionState.START
    error: str = ""
    """Why the load failed (empty when it did not)."""

    @property
    def failed(self) -> bool:
        return bool(self.error)


@dataclass(slots=True, eq=False)
class ServedVersion:
    """One loaded, warmed-up version: what a request is predicted by."""

    model: str
    version: int
    runtime: Runtime
    batcher: Batcher
    in_flight: int = 0
    """Requests submitted and not yet answered (a retired version drains them)."""
    _idle: asyncio.Event | None = field(default=None, repr=False)

    def submit(self, inputs: Batch, done: Done) -> None:
        """Queue ``inputs`` on this version's batcher; ``done`` is called once with the outputs
        or the error. Counted in flight until then."""

        def finished(outputs: Batch | None, error: BaseException | None) -> None:
            self.in_flight -= 1
            if self.in_flight == 0 and self._idle is not None:
                self._idle.set()
            done(outputs, error)

        # Counted first: the batcher may call ``finished`` before ``submit`` returns (a lone
        # request predicted at once).
        self.in_flight += 1
        try:
            self.batcher.submit(inputs, finished)
        except BaseException:  # refused (queue full...): never in flight
            self.in_flight -= 1
            raise

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no request is in flight (at most ``timeout_s``); True when none is."""
        if self.in_flight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


@dataclass(frozen=True, slots=True)
class NotFound:
    """No model or version of that name here (404, gRPC NOT_FOUND)."""

    message: str

    def error(self) -> ServingError:
        return ModelNotFoundError(self.message)


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The model or version is known but cannot serve now (503, gRPC UNAVAILABLE)."""

    message: str
    retry_after_s: float = 1.0

    def error(self) -> ServingError:
        return ModelNotReadyError(self.message, retry_after_s=self.retry_after_s)


Lookup = ServedVersion | NotFound | Unavailable


@dataclass(slots=True)
class ServedModel:
    """One model of the spec: its versions' states and those that serve."""

    name: str
    platform: str = ""
    available: dict[int, ServedVersion] = field(default_factory=dict)
    statuses: dict[int, VersionStatus] = field(default_factory=dict)
    unloaded: bool = False
    """Unloaded through the repository API: nothing is loaded until a load request."""

    def latest(self) -> ServedVersion | None:
        """The highest-numbered AVAILABLE version (what a request naming none gets)."""
        if not self.available:
            return None
        return self.available[max(self.available)]

    def status_list(self) -> list[VersionStatus]:
        """Every version's status, highest version first (as TF Serving lists them)."""
        return [self.statuses[v] for v in sorted(self.statuses, reverse=True)]

    @property
    def ready(self) -> bool:
        return bool(self.available)


class ModelSet:
    """Every model this replica serves, by name, with the versions each one serves now."""

    def __init__(self, names: tuple[str, ...]) -> None:
        if not names:
            raise ValueError("a model set needs at least one model")
        self._models = {name: ServedModel(name) for name in names}
        self.first = names[0]
        """The model the ``default`` alias reaches."""

    # questions
    def names(self) -> tuple[str, ...]:
        return tuple(self._models)

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def model(self, name: str) -> ServedModel | None:
        """The model called ``name`` (``default`` is the first), or None."""
        if name == DEFAULT_MODEL_ALIAS and name not in self._models:
            name = self.first
        return self._models.get(name)

    def lookup(self, name: str, version: str | int | None = None) -> Lookup:
        """The version a request for ``name`` (and ``version``, None: the newest) goes to."""
        model = self.model(name)
        if model is None:
            names = ", ".join(f"'{n}'" for n in self._models)
            return NotFound(
                f"model '{name}' is not served here (this server serves {names}; "
                f"'{DEFAULT_MODEL_ALIAS}' reaches '{self.first}')"
            )
        if version is None or version == "":
            latest = model.latest()
            if latest is not None:
                return latest
            if model.unloaded:
                return Unavailable(f"model '{model.name}' is unloaded", retry_after_s=5.0)
            if any(s.state is VersionState.LOADING for s in model.statuses.values()) or not any(
                s.failed for s in model.statuses.values()
            ):
                return Unavailable(f"model '{model.name}' is not ready yet")
            return Unavailable(f"model '{model.name}' has no version that loaded; see its status")
        number = _version_number(version)
        found = model.available.get(number) if number is not None else None
        if found is not None:
            return found
        status = model.statuses.get(number) if number is not None else None
        if status is not None and status.state in (VersionState.START, VersionState.LOADING):
            return Unavailable(f"model '{model.name}' version {number} is still loading")
        if status is not None and status.failed:
            return NotFound(f"model '{model.name}' version {number} failed to load: {status.error}")
        return NotFound(
            f"model '{model.name}' has no version '{version}' (served versions: {_listing(model)})"
        )

    def require(self, name: str, version: str | int | None = None) -> ServedVersion:
        """``lookup``, raising ModelNotFoundError / ModelNotReadyError instead of a reason."""
        found = self.lookup(name, version)
        if isinstance(found, ServedVersion):
            return found
        raise found.error()

    def known(self, name: str) -> ServedModel:
        """The model called ``name`` or ModelNotFoundError (status and repository requests)."""
        model = self.model(name)
        if model is None:
            raise self.lookup(name).error()  # type: ignore[union-attr]
        return model

    @property
    def ready(self) -> bool:
        """Every model serves at least one version (one unloaded on request is left out:
        unloading a model through the repository API does not make the server unready)."""
        return all(model.ready or model.unloaded for model in self._models.values())

    def batchers(self) -> list[Batcher]:
        return [v.batcher for m in self._models.values() for v in m.available.values()]

    @property
    def queue_depth(self) -> int:
        return sum(batcher.queue_depth for batcher in self.batchers())

    # changes (the version manager's, on the event loop's thread)
    def set_state(self, name: str, version: int, state: VersionState, error: str = "") -> None:
        status = self._models[name].statuses.setdefault(version, VersionStatus(version))
        status.state = state
        status.error = error

    def publish(self, served: ServedVersion, platform: str) -> None:
        """``served`` takes traffic from now on (atomically: one dict assignment)."""
        model = self._models[served.model]
        model.platform = platform
        model.available = {**model.available, served.version: served}
        self.set_state(served.model, served.version, VersionState.AVAILABLE)

    def retire(self, name: str, version: int) -> ServedVersion | None:
        """``version`` takes no new request from now on; returned so it can drain."""
        model = self._models[name]
        served = model.available.get(version)
        if served is not None:
            model.available = {v: s for v, s in model.available.items() if v != version}
        if version in model.statuses:
            self.set_state(name, version, VersionState.UNLOADING)
        return served

    def forget(self, name: str, version: int) -> None:
        """Drop a version that ended without an error from the status listing."""
        self._models[name].statuses.pop(version, None)


def _version_number(version: str | int) -> int | None:
    if isinstance(version, int):
        return version
    return int(version) if version.isdigit() and len(version) < 10 else None


def _listing(model: ServedModel) -> str:
    if not model.available:
        return "none yet"
    return ", ".join(str(v) for v in sorted(model.available))
