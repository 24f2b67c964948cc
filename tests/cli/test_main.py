import importlib
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from mlkube.cli import COMMAND_MODULES, cli


def test_the_lazy_command_index_matches_every_module():
    modules = set(COMMAND_MODULES.values())
    defined = {}
    for module_name in modules:
        module = importlib.import_module(f"mlkube.cli.{module_name}")
        for command in module.COMMANDS:
            defined[command.name] = module_name
    assert defined == COMMAND_MODULES


def _commands(command: click.Command, path: list[str]):
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(None):  # type: ignore[arg-type]
            sub = command.get_command(None, name)  # type: ignore[arg-type]
            assert sub is not None
            yield from _commands(sub, [*path, name])


def test_every_command_has_help_with_an_example_of_itself():
    for name in COMMAND_MODULES:
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None, name
        for path, found in _commands(command, [name]):
            words = " ".join(path)
            assert found.help, f"{words} has no help"
            assert "Example" in found.help, f"`mlkube {words} --help` shows no example"
            if not isinstance(found, click.Group):
                assert f"mlkube {words}" in found.help, f"{words}'s example does not run it"


def test_serve_does_not_import_the_other_backends():
    code = (
        "import sys; from mlkube.cli import cli; cli.get_command(None, 'serve'); "
        "print(sorted(m for m in sys.modules if m.startswith('mlkube.backends') "
        "or m.startswith('mlkube.autoscale') or m == 'lightkube'))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert output.strip() == "[]"


def test_the_render_example_of_the_main_help_works(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # examples/ paths are from the root
    help_text = CliRunner().invoke(cli, ["--help"]).output
    lines = [ln.split() for ln in help_text.splitlines() if ln.strip().startswith("mlkube render")]
    (line,) = lines
    result = CliRunner().invoke(cli, line[1:3])
    assert result.exit_code == 0, result.output  # it named the iris example, a local path
    assert "kind: Deployment" in result.output
