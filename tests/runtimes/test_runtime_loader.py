"""load_runtime: format dispatch, refusals, and bad files of every kind for every format."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mlkube.errors import ModelLoadError
from mlkube.runtimes import example_batch, load_runtime
from mlkube.spec import load_spec
from mlkube.testing import models
from mlkube.testing.checks import serve


def _spec(folder: Path, model: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(
        "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\n"
        f"metadata: {{name: m}}\nspec:\n  model: {model}\n"
    )
    return path


def test_a_claim_without_a_host_path_is_refused_locally(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "{uri: 'pvc://claim/iris.onnx', format: onnx}")
    with pytest.raises(ModelLoadError, match="Kubernetes PersistentVolumeClaim") as caught:
        load_runtime(load_spec(spec))
    assert "pvc://claim/iris.onnx" in str(caught.value)
    assert "storage.persistentVolume.hostPath" in str(caught.value)


def test_a_claim_bound_to_a_host_path_reads_it(tmp_path: Path, hgb_onnx: models.BuiltModel) -> None:
    (tmp_path / "volume" / "hgb").mkdir(parents=True)
    (tmp_path / "volume" / "hgb" / "m.onnx").write_bytes(hgb_onnx.path.read_bytes())
    spec = _spec(tmp_path, "{uri: 'pvc://claim/hgb/m.onnx', format: onnx}")
    spec.write_text(
        spec.read_text()
        + "  storage:\n    pvc: {name: claim}\n"
        + f"    persistentVolume: {{name: pv, hostPath: '{tmp_path / 'volume'}'}}\n"
    )
    runtime = load_runtime(load_spec(spec))
    assert runtime.predict(example_batch(runtime.inputs))


def test_an_unreachable_remote_uri_is_one_load_error(tmp_path: Path) -> None:
    # a closed loopback port: the download fails at once, with the URI and the reason
    spec = _spec(tmp_path, "{uri: 'http://127.0.0.1:9/iris.onnx', format: onnx}")
    with pytest.raises(ModelLoadError, match=r"http://127.0.0.1:9/iris.onnx") as caught:
        load_runtime(load_spec(spec))
    assert "\n" not in str(caught.value)


def test_relative_uri_resolves_against_the_spec_folder(
    tmp_path: Path, hgb_onnx: models.BuiltModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.onnx").write_bytes(hgb_onnx.path.read_bytes())
    spec = _spec(tmp_path, "{uri: models/m.onnx, format: onnx}")
    monkeypatch.chdir("/")
    runtime = load_runtime(load_spec(spec))
    assert runtime.predict({"input": hgb_onnx.rows[:3]})["label"].shape == (3,)


@pytest.mark.parametrize(
    ("module", "extra", "model_format", "file_name"),
    [
        ("xgboost", "xgboost", "xgboost", "m.json"),
        ("lightgbm", "lightgbm", "lightgbm", "m.txt"),
        ("torch", "torch", "pytorch", "m.pt"),
    ],
)
def test_missing_optional_library_names_the_extra(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    extra: str,
    model_format: str,
    file_name: str,
) -> None:
    # Edge we cannot reach otherwise: the library is installed here, so hide it from import.
    monkeypatch.setitem(sys.modules, module, None)
    (tmp_path / file_name).write_bytes(b"not empty")
    spec = _spec(tmp_path, f"{{uri: {file_name}, format: {model_format}}}")
    with pytest.raises(ModelLoadError, match=rf"pip install 'mlkube\[{extra}\]'"):
        load_runtime(load_spec(spec))


# A valid file per format (fixture name), the format, and whether trustPickle is needed.
FORMATS = [
    ("hgb_onnx", "onnx"),
    ("iris_skops", "sklearn"),
    ("xgboost_json", "xgboost"),
    ("lightgbm_txt", "lightgbm"),
    ("torchscript", "pytorch"),
    ("torch_export", "pytorch"),
]


def _copy(built: models.BuiltModel, folder: Path, data: bytes | None) -> models.BuiltModel:
    """``built`` under ``folder`` with the same file name, holding ``data`` (None: no file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / built.path.name
    if data is not None:
        path.write_bytes(data)
    return models.BuiltModel(path, built.format, built.model, built.rows, built.trust_pickle)


def _refusal(built: models.BuiltModel) -> ModelLoadError:
    with pytest.raises(ModelLoadError) as caught:
        serve(built)
    error = caught.value
    assert error.path == str(built.path)
    assert error.model_format == built.format
    assert str(built.path) in str(error)
    assert built.format in str(error)
    assert "\n" not in str(error)
    return error


@pytest.mark.parametrize(("fixture", "model_format"), FORMATS)
def test_missing_file(
    tmp_path: Path, request: pytest.FixtureRequest, fixture: str, model_format: str
) -> None:
    built = _copy(request.getfixturevalue(fixture), tmp_path, None)
    assert "does not exist" in str(_refusal(built))


@pytest.mark.parametrize(("fixture", "model_format"), FORMATS)
def test_empty_file(
    tmp_path: Path, request: pytest.FixtureRequest, fixture: str, model_format: str
) -> None:
    built = _copy(request.getfixturevalue(fixture), tmp_path, b"")
    assert "empty" in str(_refusal(built))


@pytest.mark.parametrize(("fixture", "model_format"), FORMATS)
def test_truncated_file(
    tmp_path: Path, request: pytest.FixtureRequest, fixture: str, model_format: str
) -> None:
    original: models.BuiltModel = request.getfixturevalue(fixture)
    data = original.path.read_bytes()
    built = _copy(original, tmp_path, data[: len(data) // 2])
    assert "not a valid" in str(_refusal(built))


@pytest.mark.parametrize(("fixture", "model_format"), FORMATS)
def test_wrong_format(
    tmp_path: Path, request: pytest.FixtureRequest, fixture: str, model_format: str
) -> None:
    built = _copy(
        request.getfixturevalue(fixture), tmp_path, b"this is not a model, just some text\n" * 20
    )
    assert "not a valid" in str(_refusal(built))


def test_directory_instead_of_file(tmp_path: Path, hgb_onnx: models.BuiltModel) -> None:
    (tmp_path / "dir.onnx").mkdir()
    built = models.BuiltModel(tmp_path / "dir.onnx", "onnx", None, np.zeros((1, 1)))
    assert "directory" in str(_refusal(built))


def test_other_format_file_is_refused(tmp_path: Path, iris_skops: models.BuiltModel) -> None:
    # A skops file (a zip archive) named as an ONNX model.
    built = models.BuiltModel(tmp_path / "m.onnx", "onnx", None, np.zeros((1, 1)))
    built.path.write_bytes(iris_skops.path.read_bytes())
    assert "not a valid ONNX model" in str(_refusal(built))


@pytest.mark.parametrize("fixture", [f for f, _ in FORMATS] + ["python_user"])
def test_zero_rows_answer_empty_outputs(request: pytest.FixtureRequest, fixture: str) -> None:
    runtime = serve(request.getfixturevalue(fixture))
    batch = {name: value[:0] for name, value in example_batch(runtime.inputs).items()}
    served = runtime.predict(batch)
    assert list(served) == [spec.name for spec in runtime.outputs]
    for spec in runtime.outputs:
        assert served[spec.name].shape[0] == 0
        assert served[spec.name].ndim == len(spec.shape)
