"""What ``mlkube serve`` imports before its first answer: the cold-start guard (issue 16).

Each check runs in a fresh interpreter (``sys.modules`` of this test process holds whatever
other tests imported) and walks the serve path up to a loaded runtime: the command's module,
the spec, the runtime. A module listed here as not imported made a measured part of the cold
start (``bench/cold_start.py``) until it was made lazy; importing it again on this path must be
a decision, not an accident.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlkube.testing import models

# Imported on the serve path of an ONNX model only if something regressed.
NOT_ON_THE_SERVE_PATH = (
    "mlkube.spec.job",  # TrainingJob/BatchInference models: ~10 ms of pydantic class building
    "mlkube.spec.pipeline",
    "mlkube.spec.schema",
    "mlkube.backends",
    "mlkube.autoscale",
    "mlkube.registry",
    "mlkube.storage.fetch",
    "mlkube.serving.grpc",
    "rich",
    "httpx",
    "lightkube",
    "kubernetes",
    "grpc",
    "boto3",
    "botocore",
    "torch",
    "sklearn",
    "skops",
    "tensorflow",
)


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _imported(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


def test_serving_an_onnx_model_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    spec = models.write_spec(models.save_onnx(models.iris_classifier(), tmp_path), tmp_path)
    modules = _modules_after(
        "from mlkube.cli import cli\n"
        "cli.get_command(None, 'serve')\n"
        "from mlkube.spec import load_spec\n"
        "from mlkube.runtimes import load_runtime\n"
        f"load_runtime(load_spec({str(spec)!r}))\n"
    )
    assert "onnxruntime" in modules  # the walk did reach the runtime
    assert _imported(modules, NOT_ON_THE_SERVE_PATH) == []


def test_importing_mlkube_does_not_build_the_spec_models() -> None:
    modules = _modules_after("import mlkube.errors, mlkube.clock")
    assert _imported(modules, ("pydantic", "mlkube.spec")) == []


def test_mlkube_still_offers_the_spec_names_it_re_exports() -> None:
    modules = _modules_after(
        "import mlkube\n"
        "assert mlkube.load_spec.__module__ == 'mlkube.spec.loading'\n"
        "from mlkube.spec import ModelDeployment, Pipeline, parse_duration\n"
        "assert parse_duration('1m') == 60\n"
    )
    assert "mlkube.spec.pipeline" in modules


def test_a_pipeline_file_still_loads_its_job_models(tmp_path: Path) -> None:
    # The loader imports job and pipeline models on demand: a file of those kinds must still
    # validate (and cross-check jobRef) exactly as before.
    spec = tmp_path / "pipe.yaml"
    spec.write_text(
        "apiVersion: mlkube.dev/v1alpha1\n"
        "kind: Pipeline\n"
        "metadata: {name: p}\n"
        "spec:\n"
        "  steps:\n"
        "    - name: train\n"
        "      jobRef: missing-job\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "mlkube", "validate", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "missing-job" in done.stdout + done.stderr


@pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import torch"], check=False).returncode != 0,
    reason="torch is not installed: skops.io never imports it",
)
def test_loading_a_skops_model_does_not_import_torch_and_trusts_the_same_types(
    tmp_path: Path,
) -> None:
    built = models.save_sklearn(models.iris_classifier(), tmp_path, kind="skops")
    spec = models.write_spec(built, tmp_path)
    trusted = (
        "import skops.io._trusted_types as t\n"
        "print(json.dumps({k: [str(x) for x in v] for k, v in sorted(vars(t).items())"
        " if k.isupper() and isinstance(v, list)}))\n"
    )
    ours = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys\n"
            "from mlkube.spec import load_spec\n"
            "from mlkube.runtimes import load_runtime\n"
            f"load_runtime(load_spec({str(spec)!r}))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n" + trusted,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ours.returncode == 0, ours.stderr
    plain = subprocess.run(
        [sys.executable, "-c", "import json, sys\n" + trusted],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert json.loads(ours.stdout) == json.loads(plain.stdout)
    assert json.loads(ours.stdout)["SKLEARN_ESTIMATOR_TYPE_NAMES"]


def _preloaded(spec: Path) -> set[str]:
    return _modules_after(
        "from mlkube.spec import load_spec\n"
        "from mlkube.runtimes.loader import preload_libraries\n"
        f"preload_libraries(load_spec({str(spec)!r}))\n"
    )


def test_the_parent_of_workers_preloads_the_library_of_a_skops_model(tmp_path: Path) -> None:
    built = models.save_sklearn(models.iris_classifier(), tmp_path, kind="skops")
    modules = _preloaded(models.write_spec(built, tmp_path))
    assert {"skops.io", "sklearn.base"} <= modules
    assert _imported(modules, ("torch",)) == []


def test_the_parent_of_workers_preloads_torch_for_a_torch_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    modules = _preloaded(models.write_spec(models.torchscript_model(tmp_path), tmp_path))
    assert "torch" in modules


def test_the_parent_of_workers_leaves_onnxruntime_to_the_workers(tmp_path: Path) -> None:
    built = models.save_onnx(models.iris_classifier(), tmp_path)
    modules = _preloaded(models.write_spec(built, tmp_path))
    assert _imported(modules, ("onnxruntime", "sklearn", "torch")) == []


def test_a_library_that_does_not_import_is_left_for_the_load_to_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Edge we cannot reach otherwise: xgboost is installed here, so hide it from import.
    from mlkube.runtimes.loader import preload_libraries
    from mlkube.spec import load_spec

    monkeypatch.setitem(sys.modules, "xgboost", None)
    (tmp_path / "m.json").write_text("{}", encoding="utf-8")
    spec = tmp_path / "m.yaml"
    spec.write_text(
        "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\n"
        "spec: {model: {uri: m.json, format: xgboost}}\n",
        encoding="utf-8",
    )
    preload_libraries(load_spec(spec))  # no error: the worker's load names the extra


def test_serve_turns_collections_back_on_when_it_ends_before_ready(tmp_path: Path) -> None:
    # `serve` keeps the cyclic GC off through start-up; a start that fails (here: no model
    # file) must not leave it off in the process that called it.
    spec = tmp_path / "m.yaml"
    spec.write_text(
        "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\n"
        "spec: {model: {uri: missing.onnx, format: onnx}}\n",
        encoding="utf-8",
    )
    code = (
        "import gc\nfrom mlkube.cli import main\n"
        f"try:\n    main(['serve', {str(spec)!r}, '--port', '0', '--workers', '1'])\n"
        "except SystemExit as stop:\n    print('exit', stop.code)\n"
        "print('gc enabled', gc.isenabled())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert "exit 1" in done.stdout, done.stderr
    assert "gc enabled True" in done.stdout


def test_at_ready_start_ups_objects_are_frozen_and_collections_resume() -> None:
    # In a fresh interpreter: the first collection after a start-up with the GC off walked
    # every object start-up made (~100 ms for a scikit-learn replica); frozen, it walks none.
    code = (
        "import gc\ngc.disable()\n"
        "from mlkube.serving.workers import resume_collections\n"
        "kept = [[i] for i in range(50_000)]\n"
        "resume_collections()\n"
        "print('enabled', gc.isenabled(), 'frozen', gc.get_freeze_count() >= 50_000)\n"
        "print('young', gc.get_count()[0] < 1000)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert "enabled True frozen True" in done.stdout, done.stderr
    assert "young True" in done.stdout
