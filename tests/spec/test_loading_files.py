"""Loading spec files and folders: recursive folders, file-level errors in one line, the same
document in two files, and every resource problem at once (issue: validate reported the first)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mlkube.cli import cli
from mlkube.errors import SpecError
from mlkube.spec import load_documents, parse_documents

DOC = """apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: NAME}
spec:
  model: {uri: s3://b/m.onnx, format: onnx}
"""


def _write(path: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DOC.replace("NAME", name))
    return path


def test_folders_are_searched_recursively_and_hidden_folders_skipped(tmp_path):
    _write(tmp_path / "a.yaml", "a")
    _write(tmp_path / "team" / "b.yml", "b")
    _write(tmp_path / ".git" / "c.yaml", "c")
    assert sorted(d.metadata.name for d in load_documents(tmp_path)) == ["a", "b"]


def test_a_missing_file_is_one_line_not_a_problem_in_the_spec(tmp_path):
    with pytest.raises(SpecError) as caught:
        load_documents(tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: no such file or folder"


def test_the_same_deployment_in_two_files_is_an_error_naming_both(tmp_path):
    first = _write(tmp_path / "a.yaml", "iris")
    second = _write(tmp_path / "b.yaml", "iris")
    with pytest.raises(SpecError) as caught:
        load_documents(tmp_path)
    assert f"also defined in {first}" in str(caught.value)
    assert str(second) in str(caught.value)


def test_every_resource_problem_is_reported_at_once():
    text = DOC.replace("NAME", "m") + (
        "  resources:\n    requests: {cpu: '2', memory: 2Gi}\n    limits: {cpu: '1', memory: 1Gi}\n"
    )
    with pytest.raises(SpecError) as caught:
        parse_documents(text)
    message = str(caught.value)
    assert "requests.cpu (2) must not exceed limits.cpu (1)" in message
    assert "requests.memory (2Gi) must not exceed limits.memory (1Gi)" in message


def test_validate_names_each_file_of_a_folder(tmp_path):
    _write(tmp_path / "a.yaml", "a")
    _write(tmp_path / "sub" / "b.yaml", "b")
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'a.yaml'}: ModelDeployment 'a' is valid" in result.output
    assert f"{tmp_path / 'sub' / 'b.yaml'}: ModelDeployment 'b' is valid" in result.output


def test_validate_fails_on_the_same_deployment_in_two_files(tmp_path):
    _write(tmp_path / "a.yaml", "iris")
    _write(tmp_path / "b.yaml", "iris")
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "also defined in" in result.output
