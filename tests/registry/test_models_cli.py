"""``mlkube models register | list | show`` against a registry in a tmp state dir."""

import json

from click.testing import CliRunner

from mlkube.cli import cli
from mlkube.registry import Registry, registry_root


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_register_then_list_and_show(tmp_path, monkeypatch):
    monkeypatch.delenv("MLKUBE_REGISTRY", raising=False)
    state = tmp_path / "state"
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    done = _run(
        "models", "register", "iris", str(model), "--format", "onnx",
        "--metric", "accuracy=0.97", "--param", "C=1.0", "--state-dir", str(state),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert done.output == "registered models:/iris/1 (onnx)\n"
    assert Registry(registry_root(state)).resolve("models:/iris/1").metrics == {"accuracy": 0.97}

    listed = _run("models", "list", "--state-dir", str(state))
    assert listed.output.splitlines()[0].split() == [
        "NAME", "VERSIONS", "LATEST", "FORMAT", "UPDATED", "(UTC)", "METRICS",
    ]  # fmt: skip
    assert listed.output.splitlines()[1].split()[:4] == ["iris", "1", "1", "onnx"]
    assert "accuracy=0.97" in listed.output

    shown = _run("models", "show", "iris", "--version", "1", "--state-dir", str(state))
    assert "model:    models:/iris/1 (onnx)" in shown.output
    assert "metric:   accuracy = 0.97" in shown.output
    assert "param:    C = 1.0" in shown.output
    data = json.loads(
        _run("models", "show", "iris", "-o", "json", "--state-dir", str(state)).output
    )
    assert [v["version"] for v in data] == [1]
    assert data[0]["lineage"] == {}
    for output in (listed.output, shown.output):
        assert all(len(line) <= 80 for line in output.splitlines() if "file:" not in line)


def test_mistakes_are_one_line(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    state = str(tmp_path / "state")
    bad = CliRunner().invoke(
        cli, ["models", "register", "iris", str(model), "--format", "onnx", "--metric", "acc",
              "--state-dir", state],
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "'acc' is not NAME=NUMBER" in bad.output
    missing = CliRunner().invoke(cli, ["models", "show", "nope", "--state-dir", state])
    assert missing.exit_code != 0
    assert "no registered model 'nope'" in str(missing.exception)


def test_an_empty_registry_says_how_to_fill_it(tmp_path):
    done = _run("models", "list", "--state-dir", str(tmp_path))
    assert done.output == "no models registered (see `mlkube models register --help`)\n"
