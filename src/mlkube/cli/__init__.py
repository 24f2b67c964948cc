"""The ``mlkube`` command line: one thin module per command family, registered here.

Errors: ``MlkubeError`` is caught once, in ``main``, and printed as ``error: ...`` without a
traceback (exit 1; spec errors exit 2 like usage errors). Anything else is a bug and keeps its
traceback. ``--debug`` shows tracebacks for everything.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from mlkube.cli.output import print_error
from mlkube.errors import MlkubeError, SpecError

EXIT_FAILURE = 1
EXIT_USAGE = 2


# Command name → the module under mlkube.cli that defines it (in its COMMANDS list). Modules
# are imported only when their command runs: `mlkube serve` must not pay for the Kubernetes
# client, and cold start is part of what we promise. tests/cli/test_main.py keeps this in step.
COMMAND_MODULES: dict[str, str] = {
    "validate": "validate",
    "schema": "validate",
    "capabilities": "capabilities",
    "serve": "serve",
    "up": "local",
    "down": "deployments",
    "delete": "deployments",
    "status": "deployments",
    "scale": "deployments",
    "apply": "deployments",
    "rollout": "deployments",
    "events": "deployments",
    "logs": "deployments",
    "run": "jobs",
    "jobs": "jobs",
    "cancel": "jobs",
    "simulate": "autoscale",
    "recommend": "autoscale",
    "profile": "autoscale",
    "render": "kubernetes",
    "doctor": "kubernetes",
    "dashboard": "observability",
    "alerts": "observability",
    "metrics-catalogue": "observability",
    "models": "models",
    "console": "console",
    "pipeline": "pipelines",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"mlkube.cli.{module_name}")
        commands: list[click.Command] = module.COMMANDS
        return next((c for c in commands if c.name == cmd_name), None)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="mlkube")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Deploy, autoscale and monitor ML models, on this machine or on Kubernetes.

    \b
    One spec file describes a model endpoint. Try:
      mlkube validate examples/iris/iris.yaml     check a spec
      mlkube serve examples/iris/iris.yaml        one replica in the foreground
      mlkube up examples/iris/iris.yaml           replicas, load balancer, autoscaler
      mlkube render examples/k8s-ml-guide/spec.yaml   the guide's spec as Kubernetes objects
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(args: Sequence[str] | None = None, obj: dict[str, Any] | None = None) -> None:
    """Run the command line (``args``: default ``sys.argv[1:]``) and turn errors into exit codes.

    ``obj`` becomes the root context's ``ctx.obj``: tests pass ``{"backend_factory": ...}``
    there to run the shared commands against a backend of their own.
    """
    argv = list(args) if args is not None else sys.argv[1:]
    debug = "--debug" in argv
    try:
        cli.main(args=argv, standalone_mode=False, obj=obj)
    except click.exceptions.Abort:
        print_error("aborted")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except SpecError as error:
        if debug:
            raise
        print_error(str(error))
        sys.exit(EXIT_USAGE)
    except MlkubeError as error:
        if debug:
            raise
        print_error(str(error))
        sys.exit(EXIT_FAILURE)
