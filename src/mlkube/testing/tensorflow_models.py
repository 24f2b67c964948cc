"""Tiny TensorFlow SavedModels made at test time (a tf.Module with a tf.function signature).

Needs the ``tensorflow`` extra; callers skip when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def half_plus_two(
    folder: Path, version: int | None = 1, *, scale: float = 0.5, features: int = 3
) -> Path:
    """TF Serving's classic example, with two outputs: y = x * scale + 2 and the row sum.

    Written to ``folder/<version>`` (a model base path) or to ``folder`` when version is None.
    """
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):  # type: ignore[misc]
        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[tf.TensorSpec([None, features], tf.float32, name="x")]
        )
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": x * scale + 2.0, "total": tf.reduce_sum(x, axis=1)}

    target = folder / str(version) if version is not None else folder
    module = HalfPlusTwo()
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})
    return target


def two_inputs(folder: Path) -> Path:
    """Named inputs of two dtypes and a string output: rows are objects keyed by input name."""
    import tensorflow as tf

    class Tagger(tf.Module):  # type: ignore[misc]
        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[
                tf.TensorSpec([None], tf.float32, name="price"),
                tf.TensorSpec([None], tf.int64, name="count"),
            ]
        )
        def serve(self, price: Any, count: Any) -> dict[str, Any]:
            total = price * tf.cast(count, tf.float32)
            label = tf.where(total > 10.0, tf.constant("big"), tf.constant("small"))
            return {"total": total, "label": label}

    target = folder / "1"
    module = Tagger()
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})
    return folder


def half_plus_two_scalars(folder: Path, version: int = 1) -> Path:
    """TF Serving's ``half_plus_two`` as its docs call it: ``{"instances": [1.0, 2.0, 5.0]}``
    answers ``{"predictions": [2.5, 3.0, 4.5]}``."""
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):  # type: ignore[misc]
        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[tf.TensorSpec([None], tf.float32, name="x")]
        )
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": x * 0.5 + 2.0}

    target = folder / str(version)
    module = HalfPlusTwo()
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})
    return target
