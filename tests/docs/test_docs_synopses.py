"""Commands the pages name in running text, and the blocks they mark as not runnable, name
real subcommands and options: they cannot be run here (placeholders, a cluster), but they
cannot drift from the CLI either."""

from __future__ import annotations

import re

import click
import pytest

from mlkube.cli import cli

from .doc_commands import Skipped, pages, parse_page
from .walk import REPO

INLINE = re.compile(r"`(mlkube [^`]+)`")
FENCED = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
NOT_A_COMMAND = {"mlkube serve:"}  # the prefix of serve's progress lines, quoted in prose


def synopses() -> list[tuple[str, str]]:
    """(where, text) of every inline ``mlkube ...`` span and every skipped block's line."""
    found: list[tuple[str, str]] = []
    for path in pages(REPO):
        name = path.relative_to(REPO).as_posix()
        text = path.read_text()
        prose = FENCED.sub("", text)
        found.extend((name, span) for span in INLINE.findall(prose) if span not in NOT_A_COMMAND)
        for step in parse_page(text, name).steps:
            if isinstance(step, Skipped):
                lines = [line.split("  #")[0].strip() for line in step.text.splitlines()]
                found.extend((step.where, line) for line in lines if line.startswith("mlkube "))
    return found


def check(text: str) -> list[str]:
    """What in ``text`` is not a subcommand or an option of the command it names."""
    problems: list[str] = []
    words = text.replace("\\|", "|").split()[1:]
    commands: list[click.Command] = [cli]
    for word in words:
        names = word.split("/")
        group = commands[-1]
        if not isinstance(group, click.Group):
            break
        found = [group.get_command(click.Context(group), n) for n in names]
        if not all(found):
            break
        commands = [c for c in found if c is not None]
    if len(words) and words[0] != "COMMAND" and commands == [cli]:
        problems.append(f"no subcommand {words[0]!r}")
    for command in commands:
        options = {opt for param in command.params for opt in param.opts}
        options |= {"--help", "-h"}
        for word in words:
            for option in re.findall(r"(?:^|[\[|])(--?[a-z][a-z-]*)", word):
                if option not in options:
                    problems.append(f"`mlkube {command.name}` has no option {option}")
    return problems


SYNOPSES = synopses()


def test_the_pages_name_commands_in_prose_and_in_skipped_blocks():
    assert len(SYNOPSES) > 40
    assert any("--target kubernetes" in text for _, text in SYNOPSES)


@pytest.mark.parametrize(("where", "text"), SYNOPSES, ids=[t for _, t in SYNOPSES])
def test_a_command_named_in_the_docs_exists_with_its_options(where: str, text: str) -> None:
    assert check(text) == [], f"{where}: `{text}`"


def test_the_check_catches_a_wrong_subcommand_or_option():
    assert check("mlkube scale iris 3") == []
    assert check("mlkube render SPEC [-o DIR] [--format yaml|kustomize|helm]") == []
    assert check("mlkube rollout undo NAME --to-revision 2") == []
    assert check("mlkube rollout redo NAME") == []  # stops at what is not a subcommand
    assert check("mlkube deploy spec.yaml") == ["no subcommand 'deploy'"]
    assert check("mlkube up SPEC --detached") == ["`mlkube up` has no option --detached"]
