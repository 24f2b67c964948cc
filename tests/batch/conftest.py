"""A BatchInference over generated iris-like rows, and the in-process predictions to match."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

from mlkube.runtimes.loader import load_runtime
from mlkube.spec import ModelDeployment
from mlkube.spec.job import BatchInference
from mlkube.spec.loading import load_documents
from mlkube.testing.models import BuiltModel, iris_classifier, save_onnx

COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


@dataclass
class BatchSetup:
    folder: Path
    model: BuiltModel
    rows: np.ndarray

    def write_csv(self, name: str = "rows.csv", rows: np.ndarray | None = None) -> Path:
        rows = self.rows if rows is None else rows
        path = self.folder / "input" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["row_id," + ",".join(COLUMNS)]
        lines += [f"r{i}," + ",".join(f"{v:.3f}" for v in row) for i, row in enumerate(rows)]
        path.write_text("\n".join(lines) + "\n")
        return path

    def spec(self, **spec: Any) -> Path:
        document = {
            "apiVersion": "mlkube.dev/v1alpha1",
            "kind": "BatchInference",
            "metadata": {"name": "score"},
            "spec": {
                "model": {"uri": str(self.model.path), "format": "onnx"},
                "input": {"path": "input/", "idColumn": "row_id"},
                "output": {"path": "out", "format": "jsonl"},
                **spec,
            },
        }
        path = self.folder / "batch.yaml"
        path.write_text(yaml.safe_dump(document))
        return path

    def job(self, **spec: Any) -> BatchInference:
        document = load_documents(self.spec(**spec))[0]
        assert isinstance(document, BatchInference)
        return document

    def expected(self) -> dict[str, Any]:
        """The same model in this process, on every row at once: label and probabilities."""
        deployment = ModelDeployment.model_validate(
            {
                "apiVersion": "mlkube.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "m"},
                "spec": {"model": {"uri": str(self.model.path), "format": "onnx"}},
            }
        )
        rounded = np.round(self.rows, 3).astype(np.float32)  # as written to the CSV
        return load_runtime(deployment).predict({"input": rounded})


def read_outputs(folder: Path, fmt: str = "jsonl") -> list[dict[str, Any]]:
    """Every shard file's rows, in shard order."""
    records: list[dict[str, Any]] = []
    for path in sorted(folder.glob(f"part-*.{fmt}")):
        records.extend(orjson.loads(line) for line in path.read_bytes().splitlines())
    return records


def assert_matches(records: list[dict[str, Any]], expected: dict[str, Any], count: int) -> None:
    assert [r["row_id"] for r in records] == [f"r{i}" for i in range(count)]
    assert np.array_equal([r["label"] for r in records], expected["label"])
    np.testing.assert_allclose(
        [r["probabilities"] for r in records], expected["probabilities"], rtol=1e-5, atol=1e-6
    )


@pytest.fixture
def setup(tmp_path: Path) -> BatchSetup:
    model = save_onnx(iris_classifier(), tmp_path / "model", "iris")
    generator = np.random.default_rng(0)
    low, high = model.rows.min(axis=0), model.rows.max(axis=0)
    rows = generator.uniform(low, high, size=(100_000, len(COLUMNS)))
    return BatchSetup(tmp_path, model, rows)
