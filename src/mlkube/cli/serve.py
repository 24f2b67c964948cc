"""``mlkube serve``: one replica in the foreground."""

from __future__ import annotations

import gc
import os
import shutil
import sys
from collections.abc import Callable

import click
from prometheus_client import CollectorRegistry

from mlkube.cli.output import print_status
from mlkube.clock import SystemClock
from mlkube.observability.gpu import GpuCollector, nvidia_smi_reader, visible_gpus
from mlkube.observability.logging import configure_logging
from mlkube.serving.server import MANAGEMENT_TOKEN_ENV, ReplicaOptions
from mlkube.serving.workers import (
    check_port_free,
    resume_collections,
    serve_single,
    serve_workers,
)
from mlkube.spec import load_spec


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 for every interface).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on [default: the spec's server.port, 8501].",
)
@click.option(
    "--grpc-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="gRPC port when the spec enables server.grpc [default: its port, 8500].",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Server processes sharing the port [default: the spec's server.workers].",
)
@click.option(
    "--revision",
    default="1",
    show_default=True,
    help="Revision label on metrics and logs (set by mlkube up).",
)
@click.option(
    "--replica", default="0", show_default=True, help="Replica name on logs (set by mlkube up)."
)
def serve(
    spec: str,
    host: str,
    port: int | None,
    grpc_port: int | None,
    workers: int | None,
    revision: str,
    replica: str,
) -> None:
    """Serve one replica of a deployment in the foreground until Ctrl-C or SIGTERM.

    Answers TF Serving REST (v1) and Open Inference Protocol (v2) requests, with adaptive
    batching, /metrics for Prometheus and one JSON log line per request on stdout. Progress
    lines go to stderr. With MLKUBE_MANAGEMENT_TOKEN set, the v2 model repository API
    (load, unload) takes that bearer token; unset, it is off.

    \b
    Example:
      mlkube serve examples/iris/iris.yaml --port 8501
      curl -s localhost:8501/v1/models/iris:predict -d '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
    """
    started = SystemClock().monotonic()
    # Start-up allocates to keep (modules, the model), so cyclic collections would walk live
    # objects for nothing: they are off until the model is ready (~10% of a scikit-learn
    # model's load, measured with bench/cold_start.py's models), as Python's gc docs advise
    # before a fork (https://docs.python.org/3/library/gc.html#gc.freeze). Back on at ready,
    # in each worker, or when serving ends without getting there.
    gc.disable()
    try:
        deployment = load_spec(spec)
        port = deployment.spec.server.port if port is None else port
        workers = deployment.spec.server.workers if workers is None else workers
        check_port_free(host, port)
        grpc = deployment.spec.server.grpc
        if grpc.enabled:
            grpc_port = grpc.port if grpc_port is None else grpc_port
            check_port_free(host, grpc_port, "--grpc-port")
        else:
            grpc_port = None
        configure_logging(
            fmt=deployment.spec.logging.format,
            level=deployment.spec.logging.level,
            context={"deployment": deployment.name, "revision": revision, "replica": replica},
        )
        model = ", ".join(
            f"{deployment.served_name(m)} ({m.format})" for m in deployment.spec.all_models
        )
        options = ReplicaOptions(
            collectors=_gpu_collectors(),
            host=host,
            port=port,
            revision=revision,
            replica=replica,
            on_listening=lambda url: print_status(f"mlkube serve: {model} listening on {url}"),
            grpc_port=grpc_port,
            on_grpc_listening=lambda address: print_status(
                f"mlkube serve: gRPC listening on {address}"
            ),
            on_ready=lambda seconds: _ready(
                f"mlkube serve: ready in {SystemClock().monotonic() - started:.2f} s "
                f"(model loaded and warmed up in {seconds:.2f} s)"
            ),
            on_draining=lambda: print_status("mlkube serve: draining in-flight requests"),
            management_token=os.environ.get(MANAGEMENT_TOKEN_ENV) or None,
        )
        if workers == 1:
            finished = serve_single(deployment, options)
            print_status("mlkube serve: stopped" if finished else "mlkube serve: drain timed out")
            sys.exit(0 if finished else 1)
        also = f", gRPC on {grpc_port}" if grpc_port is not None else ""
        print_status(f"mlkube serve: {model} starting {workers} workers on {host}:{port}{also}")
        code = serve_workers(
            deployment,
            options,
            workers,
            on_all_ready=lambda seconds: print_status(
                f"mlkube serve: {workers} workers ready in "
                f"{SystemClock().monotonic() - started:.2f} s"
            ),
        )
        sys.exit(code)
    finally:
        gc.enable()


def _ready(message: str) -> None:
    resume_collections()
    print_status(message)


def _gpu_collectors() -> tuple[Callable[[CollectorRegistry], object], ...]:
    """GPU utilization and memory for the GPUs this replica was given, when there are any."""
    gpus = visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if not gpus or shutil.which("nvidia-smi") is None:
        return ()
    # Imported only here: a replica without GPUs does not pay for the local backend's modules.
    from mlkube.backends.local.supervisor import run_command

    reader = nvidia_smi_reader(run_command)
    return (lambda registry: GpuCollector(registry, gpus=gpus, reader=reader),)


COMMANDS = [serve]
