"""The registry: versions, latest, lineage, MLflow's file layout, permissions, races."""

import os
import re
import stat
import threading
from pathlib import Path

import pytest
import yaml

from mlkube.backends.local.controller import settings
from mlkube.clock import ManualClock
from mlkube.registry import (
    Lineage,
    Registry,
    RegistryError,
    hash_paths,
    location,
    parse_model_uri,
    registry_root,
)
from mlkube.spec import ModelFormat


def _model(tmp_path: Path, name: str = "model.onnx", body: bytes = b"onnx-bytes") -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def test_versions_count_up_and_latest_resolves_to_the_newest(tmp_path):
    registry = Registry(tmp_path / "reg", clock=ManualClock(start=1_700_000_000))
    first = registry.register("iris", _model(tmp_path, body=b"one"), "onnx")
    second = registry.register(
        "iris",
        _model(tmp_path, body=b"two"),
        ModelFormat.ONNX,
        metrics={"accuracy": 0.97},
        params={"C": "1.0"},
        lineage=Lineage(job="default/train", spec_hash="s1", inputs_hash="i1", run_id="r1"),
    )
    assert (first.version, second.version) == (1, 2)
    assert registry.resolve("models:/iris/1").path.read_bytes() == b"one"
    latest = registry.resolve("models:/iris/latest")
    assert latest.version == 2
    assert latest.path.read_bytes() == b"two"
    assert latest.format is ModelFormat.ONNX
    assert latest.metrics == {"accuracy": 0.97}
    assert latest.params == {"C": "1.0"}
    assert latest.lineage == Lineage("default/train", "s1", "i1", "r1")
    assert latest.created_ms == 1_700_000_000_000
    assert [m.name for m in registry.list()] == ["iris"]
    assert registry.list()[0].versions == 2
    assert [v.version for v in registry.show("iris")] == [1, 2]


def test_a_folder_model_is_copied_whole(tmp_path):
    folder = tmp_path / "saved"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "weights.bin").write_bytes(b"w")
    version = Registry(tmp_path / "reg").register("net", folder, "pytorch")
    assert (version.path / "sub" / "weights.bin").read_bytes() == b"w"
    assert version.sha256 == hash_paths([folder]).removeprefix("sha256:")


def test_the_copy_is_the_registrys_own(tmp_path):
    source = _model(tmp_path, body=b"before")
    registry = Registry(tmp_path / "reg")
    registry.register("iris", source, "onnx")
    source.write_bytes(b"after")
    assert registry.resolve("models:/iris/1").path.read_bytes() == b"before"


def test_files_are_private(tmp_path):
    root = tmp_path / "reg"
    Registry(root).register("iris", _model(tmp_path), "onnx", metrics={"a": 1.0})
    for folder, _dirs, files in os.walk(root):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
        for name in files:
            mode = stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode)
            assert mode == 0o600, os.path.join(folder, name)


def test_the_layout_is_mlflows_file_store(tmp_path):
    root = tmp_path / "reg"
    version = Registry(root).register(
        "iris", _model(tmp_path), "onnx", metrics={"acc": 0.5}, params={"lr": "0.1"}
    )
    meta = yaml.safe_load((root / "models/iris/version-1/meta.yaml").read_text())
    assert meta["name"] == "iris"
    assert meta["version"] == 1
    assert meta["status"] == "READY"
    assert meta["run_id"] == version.run_id
    assert meta["source"] == version.path.parent.resolve().as_uri()
    run = root / "1" / version.run_id
    assert yaml.safe_load((run / "meta.yaml").read_text())["status"] == 3  # FINISHED
    _timestamp, value, step = (run / "metrics/acc").read_text().split()
    assert (float(value), step) == (0.5, "0")
    assert (run / "params/lr").read_text() == "0.1"
    assert yaml.safe_load((root / "1/meta.yaml").read_text())["name"] == "mlkube"


def test_concurrent_writers_get_distinct_versions(tmp_path):
    registry = Registry(tmp_path / "reg")
    source = _model(tmp_path)
    got: list[int] = []
    lock = threading.Lock()

    def register() -> None:
        version = registry.register("iris", source, "onnx").version
        with lock:
            got.append(version)

    threads = [threading.Thread(target=register) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == list(range(1, 9))


def test_an_unfinished_version_is_not_visible(tmp_path):
    registry = Registry(tmp_path / "reg")
    registry.register("iris", _model(tmp_path), "onnx")
    (tmp_path / "reg/models/iris/version-2").mkdir()  # claimed by a writer that died
    assert registry.resolve("models:/iris/latest").version == 1
    assert registry.register("iris", _model(tmp_path), "onnx").version == 3


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/iris/3", "model 'iris' has no version 3 (versions: 1)"),
        ("models:/rose/1", "no registered model 'rose'"),
        ("models:/iris", "must look like models:/NAME/VERSION"),
        ("models:/iris/0", "must be a whole number from 1, or latest"),
        ("models:/../1", "model name '..' must start with a letter or digit"),
    ],
)
def test_bad_references_say_what_exists(tmp_path, uri, message):
    registry = Registry(tmp_path / "reg")
    registry.register("iris", _model(tmp_path), "onnx")
    with pytest.raises(RegistryError, match=re.escape(message)):
        registry.resolve(uri)


def test_register_refuses_what_it_cannot_store(tmp_path):
    registry = Registry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="no file or folder at"):
        registry.register("iris", tmp_path / "missing.onnx", "onnx")
    with pytest.raises(RegistryError, match="unknown model format 'keras'"):
        registry.register("iris", _model(tmp_path), "keras")
    with pytest.raises(RegistryError, match="not a valid metric or parameter name"):
        registry.register("iris", _model(tmp_path), "onnx", metrics={"../x": 1.0})
    assert registry.list() == []


def test_latest_is_case_insensitive_as_in_mlflow():
    assert parse_model_uri("models:/iris/Latest").version is None


def test_location_follows_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLKUBE_REGISTRY", raising=False)
    monkeypatch.setenv("MLKUBE_STATE_DIR", str(tmp_path / "state"))
    assert registry_root() == tmp_path / "state" / "registry"
    assert registry_root(tmp_path / "other") == tmp_path / "other" / "registry"
    monkeypatch.setenv("MLKUBE_REGISTRY", str(tmp_path / "shared"))
    assert registry_root(tmp_path / "other") == tmp_path / "shared"


def test_location_defaults_match_the_controllers():
    assert location.DEFAULT_STATE_DIR == settings.DEFAULT_STATE_DIR
    assert location.STATE_DIR_ENV == settings.STATE_DIR_ENV


def test_damage_is_reported_not_a_traceback(tmp_path):
    root = tmp_path / "reg"
    registry = Registry(root)
    registry.register("iris", _model(tmp_path), "onnx")
    (root / "models" / ".junk").mkdir()  # a stray folder is not a model
    assert [m.name for m in registry.list()] == ["iris"]
    (root / "models/iris/version-1/meta.yaml").write_text("name: iris\n")
    with pytest.raises(RegistryError, match="damaged metadata"):
        registry.resolve("models:/iris/1")
