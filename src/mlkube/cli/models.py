"""``mlkube models list | show | register``: the model registry of this machine.

The registry is ``$MLKUBE_REGISTRY``, else ``registry`` in the state directory (``--state-dir``,
``$MLKUBE_STATE_DIR``, ``~/.mlkube``). A finished TrainingJob registers its output there; a
ModelDeployment or BatchInference names a version as ``models:/NAME/VERSION``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from mlkube.backends.base import Table
from mlkube.cli.output import print_data, print_info, print_tables
from mlkube.cli.targets import state_dir_option
from mlkube.registry import ModelVersion, open_registry
from mlkube.spec.model import ModelFormat

OUTPUT_FORMATS = click.Choice(["table", "json", "yaml"])
NUMBERS_SHOWN = 3
"""Metrics shown in a table cell; ``show`` lists them all."""


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


def _numbers(values: dict[str, float]) -> str:
    shown = [f"{k}={v:g}" for k, v in sorted(values.items())[:NUMBERS_SHOWN]]
    more = len(values) - NUMBERS_SHOWN
    return " ".join(shown + ([f"+{more}"] if more > 0 else [])) or "-"


def version_data(version: ModelVersion) -> dict[str, Any]:
    """A version as JSON-shaped data (``-o json|yaml``)."""
    lineage = {k: v for k, v in vars_of(version.lineage).items() if v is not None}
    return {
        "name": version.name,
        "version": version.version,
        "uri": version.uri,
        "format": str(version.format),
        "path": str(version.path),
        "sha256": version.sha256,
        "created": _when(version.created_ms),
        "metrics": version.metrics,
        "params": version.params,
        "lineage": lineage,
        "runId": version.run_id,
        **({"description": version.description} if version.description else {}),
    }


def vars_of(lineage: Any) -> dict[str, str | None]:
    return {k: getattr(lineage, k) for k in ("job", "spec_hash", "inputs_hash", "run_id")}


def version_lines(version: ModelVersion) -> list[str]:
    """``show --version N``: one ``key: value`` line per fact, long values on their own."""
    lines = [
        f"model:    {version.uri} ({version.format})",
        f"created:  {_when(version.created_ms)} UTC",
        f"file:     {version.path}",
        f"sha256:   {version.sha256}",
    ]
    if version.description:
        lines.append(f"about:    {version.description}")
    lines.extend(f"metric:   {k} = {v:g}" for k, v in sorted(version.metrics.items()))
    lines.extend(f"param:    {k} = {v}" for k, v in sorted(version.params.items()))
    lineage = vars_of(version.lineage)
    names = {"job": "job", "spec_hash": "spec", "inputs_hash": "inputs", "run_id": "job run"}
    lines.extend(f"{names[k] + ':':<9} {v}" for k, v in lineage.items() if v)
    return lines


@click.group()
def models() -> None:
    """Versions of models in this machine's registry (made by jobs or registered by hand).

    A ModelDeployment or BatchInference names one as models:/NAME/VERSION (or
    models:/NAME/latest). The registry is $MLKUBE_REGISTRY, else registry/ in the state
    directory; its files follow MLflow's file-store layout.

    \b
    Examples:
      mlkube models register iris model.onnx --format onnx --metric accuracy=0.97
      mlkube models list
      mlkube models show iris --version 1
    """


@models.command("list")
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
@state_dir_option
def list_models(output: str, state_dir: str | None) -> None:
    """Registered models: their number of versions and the newest one.

    \b
    Example:
      mlkube models list
    """
    found = open_registry(state_dir).list()
    if output != "table":
        print_data(
            [
                {
                    "name": m.name,
                    "versions": m.versions,
                    "latest": version_data(m.latest) if m.latest else None,
                }
                for m in found
            ],
            output,
        )
        return
    if not found:
        print_info("no models registered (see `mlkube models register --help`)")
        return
    rows = tuple(
        (
            m.name,
            str(m.versions),
            str(m.latest.version) if m.latest else "-",
            str(m.latest.format) if m.latest else "-",
            _when(m.updated_ms),
            _numbers(m.latest.metrics) if m.latest else "-",
        )
        for m in found
    )
    print_tables(
        [Table(("NAME", "VERSIONS", "LATEST", "FORMAT", "UPDATED (UTC)", "METRICS"), rows)]
    )


@models.command()
@click.argument("name")
@click.option("--version", "number", type=click.IntRange(min=1), help="One version in full.")
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
@state_dir_option
def show(name: str, number: int | None, output: str, state_dir: str | None) -> None:
    """A model's versions, or one version in full: its file, metrics, parameters, lineage.

    \b
    Examples:
      mlkube models show iris
      mlkube models show iris --version 2 -o json
    """
    registry = open_registry(state_dir)
    versions = [registry.get(name, number)] if number is not None else registry.show(name)
    if output != "table":
        data = [version_data(v) for v in versions]
        print_data(data[0] if number is not None else data, output)
        return
    if number is not None:
        for line in version_lines(versions[0]):
            print_info(line)
        return
    rows = tuple(
        (
            str(v.version),
            str(v.format),
            _when(v.created_ms),
            v.lineage.job or "(by hand)",
            _numbers(v.metrics),
        )
        for v in versions
    )
    print_tables([Table(("VERSION", "FORMAT", "CREATED (UTC)", "FROM", "METRICS"), rows, name)])


def _metric(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, float]:
    metrics = {}
    for text in values:
        key, sep, number = text.partition("=")
        try:
            metrics[key] = float(number)
        except ValueError:
            sep = ""
        if not sep or not key:
            raise click.BadParameter(f"'{text}' is not NAME=NUMBER", ctx, param)
    return metrics


def _param(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{text}' is not NAME=VALUE", ctx, param)
        params[key] = value
    return params


@models.command()
@click.argument("name")
@click.argument("path", type=click.Path(exists=True))
@click.option(
    "--format",
    "model_format",
    type=click.Choice([f.value for f in ModelFormat]),
    required=True,
    help="The model's format, as a spec's model.format.",
)
@click.option("--metric", multiple=True, callback=_metric, help="NAME=NUMBER (repeatable).")
@click.option("--param", multiple=True, callback=_param, help="NAME=VALUE (repeatable).")
@click.option("--description", default=None, help="A line about this version.")
@state_dir_option
def register(
    name: str,
    path: str,
    model_format: str,
    metric: dict[str, float],
    param: dict[str, str],
    description: str | None,
    state_dir: str | None,
) -> None:
    """Copy a model file or folder into the registry as NAME's next version.

    For models not made by a TrainingJob (a finished job registers its own output).

    \b
    Example:
      mlkube models register iris model.onnx --format onnx --metric accuracy=0.97
    """
    version = open_registry(state_dir).register(
        name, path, model_format, metrics=metric, params=param, description=description
    )
    print_info(f"registered {version.uri} ({version.format})")


COMMANDS = [models]
