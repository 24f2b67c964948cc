"""Run a BatchInference: plan the shards, run up to ``workers`` shard processes, retry, resume.

Each shard runs in a process of its own (``batch.worker``, spawned through the supervisor): a
crash or a poisoned row fails that shard alone, which is retried up to ``backoffLimit`` times
before the job fails with the shard's last error. Shards whose file already exists are not
redone, so running the same job again after an interruption (Ctrl-C, SIGKILL, a reboot)
finishes only what was left.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from mlkube.backends.local import supervisor
from mlkube.batch.plan import (
    PLAN_FILE,
    STATE_DIR,
    BatchPlan,
    InputFile,
    ModelRef,
    Progress,
    Shard,
    input_format,
    is_temporary,
    plan_differences,
    remaining,
)
from mlkube.batch.rows import column_names, count_rows
from mlkube.clock import Clock, SystemClock
from mlkube.errors import MlkubeError
from mlkube.registry import is_model_uri, resolve_model
from mlkube.runtimes.loader import REMOTE_SCHEMES
from mlkube.spec.job import BatchInference

POLL_S = 0.05
PROGRESS_EVERY_S = 0.5
WORKER_MODULE = "mlkube.batch.worker"
LOCK_FILE = "lock"


class BatchError(MlkubeError):
    """A batch job cannot start (bad input, a plan that does not match) or failed."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a finished run did."""

    shards: int
    skipped: int
    """Shards a previous run had finished."""
    ran: int
    """Shards this run predicted."""
    rows: int
    retries: int
    elapsed_s: float
    output_dir: Path


ProgressCallback = Callable[[Progress], None]


# planning: the files, the model, the plan in the output folder ------------------------------
def input_files(job: BatchInference) -> list[str]:
    """The input path as files: a file, every file in a folder, or a glob's matches."""
    raw = job.local_path(job.spec.input.path)
    if os.path.isdir(raw):
        found = sorted(str(p) for p in Path(raw).iterdir() if p.is_file())
    elif os.path.isfile(raw):
        found = [raw]
    else:
        found = sorted(p for p in glob.glob(raw) if os.path.isfile(p))
    found = [f for f in found if not os.path.basename(f).startswith(".")]
    if not found:
        raise BatchError(f"input.path: no files at {raw}")
    return found


def model_ref(job: BatchInference, state_dir: str | Path | None) -> ModelRef:
    model = job.spec.model
    if is_model_uri(model.uri):
        path = str(resolve_model(model.uri, model.format, state_dir).path)
    elif model.uri.startswith(REMOTE_SCHEMES):
        raise BatchError(
            f"model.uri '{model.uri}': local batch jobs read local files or registered "
            "versions (models:/NAME/VERSION)"
        )
    else:
        path = job.local_path(model.uri.removeprefix("file://"))
        if not os.path.exists(path):
            raise BatchError(f"model.uri: no file or folder at {path}")
    spec = model.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    spec["uri"] = path
    return ModelRef(path=path, format=str(model.format), uri=model.uri, spec=spec)


def make_plan(job: BatchInference, state_dir: str | Path | None = None) -> BatchPlan:
    """The job's plan: its files counted, its model resolved, its columns settled."""
    spec = job.spec
    files = []
    for path in input_files(job):
        fmt = input_format(path, spec.input.format)
        if fmt is None:
            raise BatchError(f"{path}: cannot tell its format; set input.format")
        stat = os.stat(path)
        files.append(InputFile(path, fmt, count_rows(path, fmt), stat.st_size, stat.st_mtime_ns))
    columns = spec.input.columns
    if not columns:
        header = column_names(files[0].path, files[0].format)
        columns = tuple(c for c in header if c != spec.input.id_column)
    if not columns:
        raise BatchError(f"{files[0].path}: no feature columns found")
    return BatchPlan(
        files=tuple(files),
        shard_rows=spec.shard_rows,
        batch_size=spec.batch_size,
        model=model_ref(job, state_dir),
        output_dir=job.local_path(spec.output.path),
        output_format=spec.output.format,
        id_column=spec.input.id_column,
        columns=tuple(columns),
    )


def prepare_output(plan: BatchPlan) -> Path:
    """Create the output folder, check a plan already there is this one, write ours, and
    remove the half-written shard files an interrupted run left. The plan file's path."""
    folder = Path(plan.output_dir)
    (folder / STATE_DIR / "logs").mkdir(parents=True, exist_ok=True)
    plan_path = folder / STATE_DIR / PLAN_FILE
    if plan_path.exists():
        old = BatchPlan.from_json(orjson.loads(plan_path.read_bytes())).identity()
        changed = plan_differences(old, plan.identity())
        if changed:
            raise BatchError(
                f"{folder} holds shards of another run ({', '.join(changed)} changed); "
                "remove the folder or set another output.path"
            )
    temp = plan_path.with_name(f".{PLAN_FILE}.tmp-{os.getpid()}")
    temp.write_bytes(orjson.dumps(plan.to_json(), option=orjson.OPT_INDENT_2))
    os.replace(temp, plan_path)
    remove_temporary(folder)
    return plan_path


def remove_temporary(folder: Path) -> None:
    """Delete half-written shard files (a worker killed mid-write leaves one)."""
    for entry in folder.iterdir():
        if is_temporary(entry.name):
            entry.unlink(missing_ok=True)


# running --------------------------------------------------------------------------------
@dataclass(slots=True)
class _Attempt:
    shard: Shard
    handle: supervisor.ProcessHandle
    log: Path
    log_offset: int


class _Run:
    """The loop of one run: start shards, watch them, retry, report progress."""

    def __init__(
        self,
        plan: BatchPlan,
        plan_path: Path,
        workers: int,
        backoff_limit: int,
        clock: Clock,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.plan, self.plan_path, self.workers = plan, plan_path, workers
        self.backoff_limit, self.clock, self.on_progress = backoff_limit, clock, on_progress
        self.shards = plan.shards
        present = set(os.listdir(plan.output_dir))
        self.todo = deque(remaining(self.shards, present, plan.output_format))
        self.skipped = len(self.shards) - len(self.todo)
        self.rows_total = sum(s.rows for s in self.shards)
        self.rows_done = self.rows_total - sum(s.rows for s in self.todo)
        self.rows_this_run = 0
        self.done_this_run = 0
        self.failures: dict[int, int] = {}
        self.running: list[_Attempt] = []
        self.started = clock.monotonic()
        self.last_report = float("-inf")
        self.interrupted = False

    def progress(self) -> Progress:
        return Progress(
            shards_total=len(self.shards),
            shards_done=self.skipped + self.done_this_run,
            shards_skipped=self.skipped,
            rows_total=self.rows_total,
            rows_done=self.rows_done,
            rows_this_run=self.rows_this_run,
            elapsed_s=self.clock.monotonic() - self.started,
            retries=sum(self.failures.values()),
            running=len(self.running),
        )

    def report(self, force: bool = False) -> None:
        now = self.clock.monotonic()
        if self.on_progress is not None and (force or now - self.last_report >= PROGRESS_EVERY_S):
            self.last_report = now
            self.on_progress(self.progress())

    def start(self, shard: Shard) -> None:
        log = Path(self.plan.output_dir) / STATE_DIR / "logs" / f"{shard.name}.log"
        offset = log.stat().st_size if log.exists() else 0
        argv = [
            sys.executable,
            "-m",
            WORKER_MODULE,
            str(self.plan_path),
            str(shard.index),
            str(os.getpid()),
        ]
        handle = supervisor.spawn(argv, env=os.environ, log_path=log)
        self.running.append(_Attempt(shard, handle, log, offset))

    def finished(self, attempt: _Attempt, exit_reason: str, ok: bool) -> None:
        shard = attempt.shard
        output = Path(self.plan.output_dir) / shard.output_name(self.plan.output_format)
        if ok and output.exists():
            self.done_this_run += 1
            self.rows_this_run += shard.rows
            self.rows_done += shard.rows
            return
        failures = self.failures.get(shard.index, 0) + 1
        self.failures[shard.index] = failures
        if failures > self.backoff_limit:
            reason = _last_error(attempt.log, attempt.log_offset) or exit_reason
            raise BatchError(
                f"shard {shard.name} ({Path(shard.file).name} rows {shard.start}-"
                f"{shard.stop - 1}) failed {failures} times (backoffLimit "
                f"{self.backoff_limit}): {reason}; its log: {attempt.log}"
            )
        self.todo.append(shard)

    def interrupt(self, signum: int, frame: object) -> None:
        self.interrupted = True

    def loop(self) -> None:
        self.report(force=True)
        while self.todo or self.running:
            if self.interrupted:
                raise KeyboardInterrupt
            while self.todo and len(self.running) < self.workers:
                self.start(self.todo.popleft())
            for attempt in list(self.running):
                exited = attempt.handle.poll()
                if exited is None:
                    continue
                self.running.remove(attempt)
                self.finished(attempt, exited.reason, exited.code == 0)
                self.report(force=True)
            self.report()
            self.clock.sleep_blocking(POLL_S)
        self.report(force=True)

    def stop_all(self) -> None:
        for attempt in self.running:
            attempt.handle.kill()
        for attempt in self.running:
            while attempt.handle.poll() is None:
                self.clock.sleep_blocking(POLL_S)
        remove_temporary(Path(self.plan.output_dir))  # what the killed workers were writing
        self.running.clear()


def _last_error(log: Path, offset: int) -> str:
    """The worker's ``error: ...`` line from this attempt's part of its log."""
    try:
        with log.open("rb") as stream:
            stream.seek(offset)
            lines = stream.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1].removeprefix("error: ")
    return next((line for line in reversed(lines) if line.strip()), "")


def run_batch(
    job: BatchInference,
    *,
    state_dir: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
    clock: Clock | None = None,
) -> BatchResult:
    """Run ``job`` to the end: every shard's file written, or BatchError with the reason.

    ``state_dir`` picks the registry for ``models:/`` URIs (default: $MLKUBE_REGISTRY, else
    the state directory's). ``on_progress`` is called at least every half second and on each
    shard's end. On SIGTERM or Ctrl-C the running shards are killed (their partial files are
    never renamed into place) and the exception propagates: running the job again resumes.
    """
    clock = clock or SystemClock()
    plan = make_plan(job, state_dir)
    with output_lock(Path(plan.output_dir)):
        plan_path = prepare_output(plan)
        run = _Run(plan, plan_path, job.spec.workers, job.spec.backoff_limit, clock, on_progress)
        _run_loop(run)
    return BatchResult(
        shards=len(run.shards),
        skipped=run.skipped,
        ran=run.done_this_run,
        rows=run.rows_total,
        retries=sum(run.failures.values()),
        elapsed_s=clock.monotonic() - run.started,
        output_dir=Path(plan.output_dir),
    )


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """Hold the output folder for this run: a second run of the job at the same time would
    predict the same shards and remove the first one's half-written files. The lock goes
    with the process (flock), so a killed run never leaves it behind."""
    (folder / STATE_DIR).mkdir(parents=True, exist_ok=True)
    with open(folder / STATE_DIR / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise BatchError(
                f"{folder} is in use by another run of this job (pid {holder}); wait for it "
                "or stop it"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


STOP_SIGNALS = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
"""Signals that end a run (workers killed, KeyboardInterrupt raised), when their handler is
still Python's default: an embedding program's own handlers are left alone."""


def _run_loop(run: _Run) -> None:
    """``run.loop()``, with SIGTERM and Ctrl-C noted and acted on between two steps (raising
    at any point could lose a worker just spawned); only the main thread may set handlers."""
    replaced = {}
    if threading.current_thread() is threading.main_thread():
        for signum, default in STOP_SIGNALS.items():
            if signal.getsignal(signum) is default:
                replaced[signum] = signal.signal(signum, run.interrupt)
    try:
        run.loop()
    finally:
        run.stop_all()
        for signum, previous in replaced.items():
            signal.signal(signum, previous)
