"""Model versions on disk, and the manager that loads, switches and unloads them (hot reload).

The layout is TF Serving's: a model whose ``uri`` is a directory holding numbered
subdirectories (``1/``, ``2/``...) is versioned, each subdirectory one version; anything else
(a file, a directory without numbered subdirectories, a registry URI) is one version, number
``model.version``. A version directory holds the model file (the only file in it, or the one
named ``model.*``); for format python the directory itself is the import path. An empty
version directory is not a version yet (it is still being copied in).

The manager, per model, every ``server.versionPollInterval``:

1. reads the versions present and picks those to serve by ``versionPolicy``;
2. loads each picked version not loaded yet (off the event loop), answers one warm-up
   prediction, and publishes it in the model set: from that moment requests reach it, and a
   request naming no version reaches the newest;
3. then retires the versions no longer picked: they take no new request, their requests in
   flight finish (up to ``server.drainTimeout``), and they unload.

A version that fails to load (or to warm up) is reported in the model status with its error
and never published; it is tried again only when its directory changes. While every picked
version has failed, the versions serving before keep serving. Load and unload through the
repository extension go through the same steps, one model at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from mlkube.batching.batcher import Batcher, BatcherSettings
from mlkube.batching.warmup import calibrate
from mlkube.clock import Clock
from mlkube.errors import InvalidInputError, ModelLoadError, ModelNotFoundError
from mlkube.observability.metrics import ServerMetrics
from mlkube.runtimes.base import Runtime, example_batch
from mlkube.runtimes.loader import is_elsewhere, model_location
from mlkube.serving.abandonable import call_abandonable
from mlkube.serving.models import ModelSet, ServedVersion, VersionState
from mlkube.spec import ModelDeployment, ModelFormat
from mlkube.spec.deployment import MODELS_SCHEME
from mlkube.spec.model import ModelSpec

logger = logging.getLogger(__name__)

Loader = Callable[[ModelDeployment], Runtime]
"""Loads the (one) model of a deployment: ``runtimes.load_runtime``, or a test's double."""


# versions on disk (pure but for reading the directory)
@dataclass(frozen=True, slots=True)
class VersionOnDisk:
    """One version present: its number, the path its runtime loads, and a signature of its
    files (size and modification time) that changes when the files do."""

    number: int
    path: str
    signature: tuple[tuple[str, int, int], ...] = ()


def versions_on_disk(path: str, model: ModelSpec) -> dict[int, VersionOnDisk]:
    """The versions of the model at ``path``: numbered subdirectories, or ``model.version``."""
    if path.startswith(MODELS_SCHEME) or not is_versioned(path):
        return {model.version: VersionOnDisk(model.version, path)}
    found = {}
    with os.scandir(path) as entries:
        directories = [e for e in entries if e.name.isdigit() and e.is_dir()]
    for entry in directories:
        signature = _signature(entry.path)
        if not signature:  # still empty: being created
            continue
        number = int(entry.name)
        version_path = entry.path if model.format is ModelFormat.PYTHON else _model_file(entry.path)
        found[number] = VersionOnDisk(number, version_path, signature)
    return found


def is_versioned(path: str) -> bool:
    """Whether ``path`` is a directory of numbered version subdirectories (TF Serving's)."""
    if not os.path.isdir(path):
        return False
    try:
        with os.scandir(path) as entries:
            return any(e.name.isdigit() and e.is_dir() for e in entries)
    except OSError:
        return False


def _model_file(directory: str) -> str:
    """The model file in a version directory: the only file, or the one named ``model.*``.
    Anything else is returned as the directory, whose load then fails with a clear error."""
    with os.scandir(directory) as entries:
        files = sorted(e.name for e in entries if e.is_file() and not e.name.startswith("."))
    if len(files) == 1:
        return os.path.join(directory, files[0])
    named = [f for f in files if f.startswith("model.")]
    if len(named) == 1:
        return os.path.join(directory, named[0])
    return directory


def _signature(directory: str) -> tuple[tuple[str, int, int], ...]:
    items = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if name.startswith("."):
                continue
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            items.append((os.path.relpath(full, directory), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(items))


# the manager
@dataclass(slots=True)
class _Model:
    spec: ModelSpec
    name: str
    path: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failed: dict[int, tuple[tuple[str, int, int], ...]] = field(default_factory=dict)
    """Versions whose load failed, with their files' signature then (retried on a change)."""
    loaded_from: dict[int, VersionOnDisk] = field(default_factory=dict)


class VersionManager:
    """Keeps each model's served versions equal to what its directory and policy say."""

    def __init__(
        self,
        deployment: ModelDeployment,
        models: ModelSet,
        *,
        loader: Loader,
        clock: Clock,
        metrics: ServerMetrics,
        may_arrive: Callable[[], int] | None = None,
    ) -> None:
        self.deployment = deployment
        self.may_arrive = may_arrive
        """How many more requests may still arrive (the batchers' ``may_arrive``)."""
        self.models = models
        self.loader = loader
        self.clock = clock
        self.metrics = metrics
        self._models = {
            deployment.served_name(spec): _Model(
                spec, deployment.served_name(spec), deployment.model_path(spec)
            )
            for spec in deployment.spec.all_models
        }
        self.load_seconds: dict[str, float] = dict.fromkeys(self._models, 0.0)
        self._retiring: set[asyncio.Task[None]] = set()

    @staticmethod
    def model_set(deployment: ModelDeployment) -> ModelSet:
        """An empty model set naming every model of ``deployment``."""
        return ModelSet(tuple(deployment.served_name(m) for m in deployment.spec.all_models))

    # start and watch
    async def start(self) -> None:
        """The first load of every model. Raises ModelLoadError when a model has no version
        that loads (the replica then fails to start, as with one bad model file)."""
        for model in self._models.values():
            started = self.clock.monotonic()
            await self._sync(model, first=True)
            self.load_seconds[model.name] = self.clock.monotonic() - started

    async def watch(self, stop: asyncio.Event) -> None:
        """Poll every model's directory until ``stop`` is set (interval 0: do not)."""
        interval = self.deployment.spec.server.version_poll_interval
        if interval <= 0 or not any(is_versioned(m.path) for m in self._models.values()):
            await stop.wait()
            return
        while not stop.is_set():
            await self.clock.sleep(interval)
            for model in self._models.values():
                if stop.is_set():
                    break
                if self.models.known(model.name).unloaded:
                    continue
                try:
                    await self._sync(model)
                except Exception:  # a bug of ours must not stop the watch of the others
                    logger.exception("watching the versions failed", extra={"model": model.name})

    # the repository extension
    async def load(self, name: str) -> None:
        """Load (again) every version of ``name`` its policy selects, then retire the rest.

        Raises ModelLoadError (400) when no selected version loads."""
        model = self._model(name)
        self.models.known(name).unloaded = False
        try:
            await self._sync(model, reload=True)
        except ModelLoadError as error:  # the repository API's answer: 400 with the reason
            raise InvalidInputError(f"model '{model.name}' failed to load: {error}") from None

    async def unload(self, name: str) -> None:
        """Retire every version of ``name``; it serves nothing until the next load."""
        model = self._model(name)
        async with model.lock:
            self.models.known(name).unloaded = True
            for number in list(self.models.known(name).available):
                await self._retire(model, number)

    async def close(self) -> None:
        """Stop every batcher (the replica is stopping)."""
        for batcher in self.models.batchers():
            await batcher.close()

    def _model(self, name: str) -> _Model:
        served = self.models.known(name)
        model = self._models.get(served.name)
        if model is None:  # pragma: no cover - the set and the manager name the same models
            raise ModelNotFoundError(f"model '{name}' is not served here")
        return model

    # one model's step
    async def _sync(self, model: _Model, *, first: bool = False, reload: bool = False) -> None:
        async with model.lock:
            loop = asyncio.get_running_loop()
            if first and is_elsewhere(model.spec.uri):  # s3://, gs://, http(s)://, pvc://
                model.path = await call_abandonable(
                    "mlkube-fetch", model_location, self.deployment, model.spec
                )
            present = await loop.run_in_executor(None, versions_on_disk, model.path, model.spec)
            served = self.models.known(model.name)
            picked, errors = await self._load_picked(model, present, reload=reload)
            serving_picked = any(n in served.available for n in picked)
            if first and not served.available:
                raise errors[0] if errors else self._nothing_to_serve(model, picked)
            if reload and errors and not serving_picked:
                raise errors[0]
            if serving_picked:  # never retire the last versions for ones that failed
                for number in [n for n in served.available if n not in picked]:
                    await self._retire(model, number)
            for number in list(served.statuses):
                gone = number not in present and number not in served.available
                if gone and served.statuses[number].failed:  # its directory is gone: so is
                    self.models.forget(model.name, number)  # its failure
                    model.failed.pop(number, None)

    async def _load_picked(
        self, model: _Model, present: dict[int, VersionOnDisk], *, reload: bool
    ) -> tuple[tuple[int, ...], list[ModelLoadError]]:
        """Load what the policy picks and is not served yet (or changed, or all of it on a
        reload), newest first. A version that fails drops out of the choice, so the policy
        picks the next one instead (``latest: 2`` with a broken newest version keeps serving
        the two before it). The versions picked in the end, and the errors."""
        errors: list[ModelLoadError] = []
        tried: set[int] = set()
        while True:
            loadable = {
                number: version
                for number, version in present.items()
                if model.failed.get(number) != version.signature or (reload and number not in tried)
            }
            picked = model.spec.version_policy.select(loadable)
            todo = [
                n
                for n in picked
                if n not in tried and (reload or self._needs_load(model, present[n]))
            ]
            if not todo:
                return picked, errors
            for number in todo:
                tried.add(number)
                error = await self._load(model, present[number])
                if error is not None:
                    errors.append(error)

    def _needs_load(self, model: _Model, version: VersionOnDisk) -> bool:
        if version.number not in self.models.known(model.name).available:
            return True
        before = model.loaded_from.get(version.number)
        return before is not None and before.signature != version.signature

    @staticmethod
    def _nothing_to_serve(model: _Model, picked: tuple[int, ...]) -> ModelLoadError:
        reason = (
            f"none of versions {list(picked)} loaded"
            if picked
            else "no version to serve: no numbered version subdirectory holds a model"
        )
        return ModelLoadError(model.path, str(model.spec.format), reason)

    async def _load(self, model: _Model, version: VersionOnDisk) -> ModelLoadError | None:
        """Load, warm up and publish one version; the error when it fails (also reported)."""
        number = version.number
        self.models.set_state(model.name, number, VersionState.LOADING)
        logger.info("loading model version", extra={"model": model.name, "version": number})
        started = self.clock.monotonic()
        try:
            runtime = await call_abandonable(
                "mlkube-load", self.loader, self._one_model(model, version)
            )
            warm_started = self.clock.monotonic()
            try:
                await call_abandonable(
                    "mlkube-warm-up", runtime.predict, example_batch(runtime.inputs)
                )
            except Exception as error:
                raise ModelLoadError(
                    version.path,
                    str(model.spec.format),
                    f"the warm-up prediction failed: {error}",
                ) from error
        except Exception as error:
            failure = (
                error
                if isinstance(error, ModelLoadError)
                else ModelLoadError(version.path, str(model.spec.format), str(error))
            )
            model.failed[number] = version.signature
            if number in self.models.known(model.name).available:
                # a reload of a served version failed: the copy loaded before still serves
                self.models.set_state(model.name, number, VersionState.AVAILABLE)
            else:
                self.models.set_state(model.name, number, VersionState.END, str(failure))
            logger.warning(
                "model version failed to load",
                extra={"model": model.name, "version": number, "error": str(failure)},
            )
            return failure
        warm_s = self.clock.monotonic() - warm_started
        batcher = self._batcher(model, runtime)
        batching = model.spec.batching or self.deployment.spec.batching
        costs = await call_abandonable(
            "mlkube-calibrate",
            calibrate,
            runtime,
            batching,
            batching.enabled and runtime.supports_batching,
            self.clock,
            warm_s,
        )
        batcher.calibrate(costs or [(1, warm_s)])
        previous = self.models.known(model.name).available.get(number)
        self.models.publish(ServedVersion(model.name, number, runtime, batcher), runtime.platform)
        model.failed.pop(number, None)
        model.loaded_from[number] = version
        if previous is not None:  # reloaded in place: the old copy drains in the background
            self._drain_later(model, previous)
        logger.info(
            "model version ready",
            extra={
                "model": model.name,
                "version": number,
                "load_seconds": round(self.clock.monotonic() - started, 3),
            },
        )
        return None

    async def _retire(self, model: _Model, number: int) -> None:
        served = self.models.retire(model.name, number)
        model.loaded_from.pop(number, None)
        if served is not None:
            await self._drain(served)
        self.models.set_state(model.name, number, VersionState.END)
        logger.info("model version unloaded", extra={"model": model.name, "version": number})

    async def _drain(self, served: ServedVersion) -> None:
        timeout = self.deployment.spec.server.drain_timeout
        if not await served.drained(timeout):
            logger.warning(
                "model version unloaded with requests in flight",
                extra={"model": served.model, "version": served.version},
            )
        await served.batcher.close()

    def _drain_later(self, model: _Model, served: ServedVersion) -> None:
        task = asyncio.get_running_loop().create_task(self._drain(served))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _batcher(self, model: _Model, runtime: Runtime) -> Batcher:
        spec = self.deployment.spec
        batching = model.spec.batching or spec.batching
        return Batcher(
            runtime.predict,
            BatcherSettings(
                max_batch_size=batching.max_batch_size,
                max_batch_requests=batching.max_batch_requests,
                max_latency_s=batching.max_latency_ms / 1000,
                max_queue=spec.server.max_queue_size,
                timeout_s=spec.server.request_timeout,
                enabled=batching.enabled and runtime.supports_batching,
                inline=not runtime.runs_user_code,
            ),
            clock=self.clock,
            observer=self.metrics.observer(model.name),
            may_arrive=self.may_arrive,
        )

    def _one_model(self, model: _Model, version: VersionOnDisk) -> ModelDeployment:
        """The deployment as its loader sees it: this model alone, at this version's path."""
        spec = model.spec.model_copy(
            update={"uri": version.path, "name": model.name, "version": version.number}
        )
        deployment_spec = self.deployment.spec.model_copy(
            update={"single_model": spec, "models": None}
        )
        return self.deployment.model_copy(update={"spec": deployment_spec})
