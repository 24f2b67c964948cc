"""Every command README.md and docs/*.md show runs as shown (extracted from the markdown).

The walk of a page runs its commands in order in a scratch working copy (``walk.py``); the
extraction and its markers are in ``doc_commands.py``. Blocks a page marks as not runnable
here are counted and listed at the end of the run (``conftest.py``), never dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlkube.backends.local import supervisor
from mlkube.testing.models import iris_classifier, save_onnx

from .conftest import SKIPPED_PROPERTY
from .doc_commands import (
    Command,
    DocSyntaxError,
    ShownOutput,
    Skipped,
    WriteFile,
    output_matches,
    pages,
    parse_page,
)
from .walk import REPO, Workspace, walk

PAGES = [p.relative_to(REPO).as_posix() for p in pages(REPO)]


def parsed(name: str):
    return parse_page((REPO / name).read_text(), name)


# the extraction ------------------------------------------------------------------------------
SAMPLE = """\
# A page

```sh
mlkube up -d examples/   # a comment the shell ignores
# a comment line
mlkube render spec.yaml \\
  -o deploy/
```

<!-- docs-test: write bad.yaml
kind: Nope
-->

<!-- docs-test: exit=1 -->
```console
$ mlkube validate bad.yaml
error: bad.yaml: 1 problem ... spec
```

<!-- docs-test: skip needs a cluster -->
```bash
mlkube apply spec.yaml --target kubernetes
```

<!-- docs-test: output-of=mlkube up -->
```text
started
```

```text
mlkube status NAME
```
"""


def test_the_extractor_reads_commands_markers_outputs_and_files():
    page = parse_page(SAMPLE, "sample.md")
    kinds = [type(step) for step in page.steps]
    assert kinds == [Command, Command, WriteFile, Command, Skipped, ShownOutput]
    up, render, _, validate = page.steps[:4]
    assert isinstance(up, Command)
    assert isinstance(render, Command)
    assert isinstance(validate, Command)
    assert up.text == "mlkube up -d examples/   # a comment the shell ignores"
    assert (up.line, render.line) == (4, 6)
    assert render.text == "mlkube render spec.yaml -o deploy/"
    assert validate.expected_exit == 1
    assert validate.shown_output == ["error: bad.yaml: 1 problem ... spec"]
    skipped = page.skipped[0]
    assert (skipped.reason, skipped.text) == (
        "needs a cluster",
        "mlkube apply spec.yaml --target kubernetes",
    )
    assert page.unmarked == ["sample.md:30"]  # a command in a text block without a marker


def test_a_marker_must_precede_a_block_and_be_known():
    with pytest.raises(DocSyntaxError, match="must precede a block"):
        parse_page("<!-- docs-test: exit=1 -->\nprose\n```sh\nls\n```\n", "x.md")
    with pytest.raises(DocSyntaxError, match="unknown docs-test marker"):
        parse_page("<!-- docs-test: sometimes -->\n```sh\nls\n```\n", "x.md")


def test_shown_output_matches_in_order_with_ellipses():
    actual = (
        "error: bad.yaml: 2 problems\n  bad.yaml:7: input should be 'a', 'b', 'c' (found 'x')\n"
    )
    assert output_matches(["bad.yaml:7: input should be 'a', ... (found 'x')"], actual) == []
    assert output_matches(["bad.yaml:8: ..."], actual) == ["bad.yaml:8: ..."]
    # order matters: the second line must come after the first
    assert output_matches(["bad.yaml:7: ...", "error: ..."], actual) == ["error: ..."]


# the pages themselves ---------------------------------------------------------------------------
def test_every_page_parses_and_shows_no_unmarked_command():
    unmarked = [where for name in PAGES for where in parsed(name).unmarked]
    assert unmarked == [], (
        "blocks that show mlkube commands but are neither run (```sh/```console) nor marked "
        f"<!-- docs-test: skip REASON -->: {unmarked}"
    )


def test_the_readme_and_the_local_guide_have_commands_to_walk():
    assert len(parsed("README.md").commands) >= 2
    assert len(parsed("docs/local.md").commands) >= 8


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", [n for n in PAGES if parsed(n).commands or parsed(n).skipped])
def test_the_commands_of_a_page_run_as_documented(
    name: str, tmp_path: Path, record_property
) -> None:
    page = parsed(name)
    result = walk(page, Workspace(tmp_path))
    record_property(
        SKIPPED_PROPERTY,
        [f"{s.where}: {s.reason}: {s.text.strip().splitlines()[0]} ..." for s in result.skipped],
    )
    assert len(result.ran) + len(result.failures) > 0 or not page.commands
    assert not result.failures, f"{name}: the docs and the behaviour differ:\n" + "\n".join(
        result.failures
    )
    assert [r.command for r in result.ran] == page.commands  # nothing was left out


BROKEN_PAGE = """\
```sh
ls examples/iris/models/iris.onnx
mlkube up -d --wait examples/iris/
mlkube scale no-such-deployment 2
```

```console
$ mlkube validate examples/iris/iris.yaml
examples/iris/iris.yaml: ModelDeployment 'iris' is valid ...
ModelDeployment 'iris' is perfect
```
"""


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_walk_reports_what_differs_and_stops_what_the_page_started(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    # The model examples/iris/train.py would write (that script's walk is the pages' own):
    # built in this process, a few seconds of imports sooner than a training run.
    save_onnx(iris_classifier(), workspace.root / "examples" / "iris" / "models", "iris")
    result = walk(parse_page(BROKEN_PAGE, "broken.md"), workspace)
    assert len(result.failures) == 2, result.failures
    scale, validate = result.failures
    assert scale.startswith("broken.md:4: `mlkube scale no-such-deployment 2` exited 1")
    assert "no deployment named 'no-such-deployment'" in scale
    assert validate.startswith("broken.md:8: `mlkube validate examples/iris/iris.yaml` did not")
    assert "ModelDeployment 'iris' is perfect" in validate
    assert "is valid" not in validate.split("it printed")[0]  # that line matched
    started = sorted(workspace.controller.pids)
    assert started, "the walk saw the controller and replicas it started"
    assert [pid for pid in started if supervisor.pid_alive(pid)] == []
