"""The scikit-learn runtime: skops files, ONNX exports, and pickle/joblib only when trusted.

File endings decide how a file loads:

- ``.skops``: `skops.io.load`. Types skops does not trust by default are accepted when they come
  from scikit-learn, NumPy or SciPy; any other type is refused unless ``trustPickle`` is set.
- ``.onnx``: served by onnxruntime, like format onnx (see `mlkube.runtimes.onnx_runtime`).
- ``.pkl``, ``.pickle``, ``.joblib``: `joblib.load`, which reads plain pickles too; refused
  unless ``spec.model.trustPickle`` is true, because unpickling runs arbitrary code.

Threads: OpenMP and BLAS pools are capped at ``MLKUBE_SKLEARN_THREADS`` (default 1) for the
process when a native model loads.

A loaded estimator takes one input ``input`` (FP64, [-1, n_features_in_]). Classifiers answer
``label`` (from predict) and, when they have predict_proba, ``probabilities`` ([-1, classes]);
other estimators answer ``prediction``. Output dtypes and shapes come from a test prediction on
one row of zeros at load time. For classifiers whose predict is the argmax of predict_proba
(trees, forests, gradient boosting, logistic regression), labels are taken from the
probabilities, so one call computes both; rows with tied probabilities are sent to predict.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np

from mlkube.errors import ModelLoadError
from mlkube.runtimes.base import Array, Batch, Datatype, Runtime, TensorSpec, datatype_of
from mlkube.runtimes.onnx_runtime import OnnxRuntime
from mlkube.runtimes.support import (
    check_file,
    empty_outputs,
    env_threads,
    library_reason,
    load_failed,
)

FORMAT = "sklearn"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
SUFFIXES = (".skops", ".onnx", *PICKLE_SUFFIXES)

THREADS_VARIABLE = "MLKUBE_SKLEARN_THREADS"
_THREAD = threading.local()
"""Environment variable: OpenMP and BLAS threads for scikit-learn (default 1). Replicas scale
by processes; on a busy machine, OpenMP teams of several threads wait for each other and one
small predict call can take tens of milliseconds instead of one."""

SAFE_MODULES = ("sklearn", "numpy", "scipy")
"""Top-level packages whose types a .skops file may hold without trustPickle."""

ARGMAX_CLASSIFIERS = frozenset(
    {
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "KNeighborsClassifier",
        "LogisticRegression",
    }
)
"""scikit-learn classifiers whose predict picks the class of highest probability."""

_TRUST_HINT = "set spec.model.trustPickle: true only if you made this file yourself"


def load_sklearn(path: str, trust_pickle: bool) -> Runtime:
    """The runtime for a scikit-learn model file at ``path``."""
    file = check_file(path, FORMAT, SUFFIXES)
    suffix = file.suffix.lower()
    if suffix == ".onnx":
        return OnnxRuntime(path, FORMAT)
    _limit_threads(env_threads(THREADS_VARIABLE))
    if suffix == ".skops":
        return SklearnRuntime(_load_skops(file, trust_pickle), path)
    return SklearnRuntime(_load_pickle(file, trust_pickle), path)


def preload(suffix: str) -> None:
    """Import what loading a file ending in ``suffix`` imports (``loader.preload_libraries``):
    skops.io (which imports scikit-learn and SciPy), else scikit-learn's base, which
    unpickling any estimator imports first. The thread limit is set first, as for a load."""
    if suffix == ".onnx":
        return
    _limit_threads(env_threads(THREADS_VARIABLE))
    if suffix == ".skops":
        import_skops_io()
    else:
        importlib.import_module("sklearn.base")


def _limit_threads(threads: int) -> None:
    """Cap OpenMP and BLAS thread pools for the whole process (threadpoolctl ships with sklearn).

    OpenMP's limit set through threadpoolctl holds only for the calling thread, and the server
    predicts slow models in a worker thread: ``OMP_NUM_THREADS`` gives every thread the default
    (read when libgomp loads, which is when scikit-learn's compiled code is first imported), and
    ``predict`` applies the limit once in each new thread (bench/serve.py measured 2 OpenMP
    threads spinning against each other at 12 ms per 1-row call, against 1.5 ms with one).
    """
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    threadpoolctl = importlib.import_module("threadpoolctl")
    threadpoolctl.threadpool_limits(limits=threads, user_api="openmp")
    threadpoolctl.threadpool_limits(limits=threads, user_api="blas")


HIDDEN_AT_SKOPS_IMPORT = tuple(
    f"sklearn.externals.array_api_compat.{backend}" for backend in ("torch", "cupy", "dask")
)
"""Packages hidden while skops.io imports (`import_skops_io`): no estimator lives there."""


def import_skops_io() -> ModuleType:
    """``skops.io``, imported without importing torch (or cupy, dask) on the way.

    skops.io lists the types it trusts at import with scikit-learn's ``all_estimators()``,
    which walks every sklearn package with ``pkgutil.walk_packages``; that imports each
    package, including the vendored ``array_api_compat.torch``, which imports torch: ~3 s of
    a cold start (more than loading the model), for a package that holds no estimator
    (``all_estimators`` skips ``externals``) and that no skops file needs. ``walk_packages``
    skips a package whose import raises ImportError
    (https://docs.python.org/3/library/pkgutil.html#pkgutil.walk_packages), so these packages
    are hidden (``None`` in ``sys.modules``) for the import only: skops trusts the same
    types, and torch loads later as usual if anything (a torch model) asks for it.
    """
    if "skops.io" in sys.modules:  # imported (or being imported: this waits for it)
        return importlib.import_module("skops.io")
    modules = cast(dict[str, ModuleType | None], sys.modules)
    hidden = [name for name in HIDDEN_AT_SKOPS_IMPORT if name not in modules]
    for name in hidden:
        modules[name] = None
    try:
        return importlib.import_module("skops.io")
    finally:
        for name in hidden:
            if name in modules and modules[name] is None:
                del modules[name]


def _load_skops(file: Path, trust_pickle: bool) -> object:
    skops_io: Any = import_skops_io()  # imported on first use

    path = str(file)
    try:
        untrusted = skops_io.get_untrusted_types(file=file)
    except Exception as error:
        raise load_failed(path, FORMAT, "skops file", error) from error
    unsafe = [name for name in untrusted if name.split(".", 1)[0] not in SAFE_MODULES]
    if unsafe and not trust_pickle:
        raise ModelLoadError(
            path,
            FORMAT,
            f"the skops file holds types that are not known to be safe: {', '.join(unsafe)}; "
            + _TRUST_HINT,
        )
    try:
        return skops_io.load(file, trusted=untrusted)
    except Exception as error:
        raise load_failed(path, FORMAT, "skops file", error) from error


def _load_pickle(file: Path, trust_pickle: bool) -> object:
    path = str(file)
    if not trust_pickle:
        raise ModelLoadError(
            path,
            FORMAT,
            "pickle and joblib files run arbitrary code when loaded, so they load only with "
            f"spec.model.trustPickle: true ({_TRUST_HINT}); safer: save the model with skops "
            "(.skops) or export it to ONNX",
        )
    # Imported on first use; joblib reads its own files and plain pickles.
    joblib = importlib.import_module("joblib")

    try:
        return joblib.load(file)
    except Exception as error:
        raise load_failed(path, FORMAT, "pickle or joblib file", error) from error


class SklearnRuntime:
    """A fitted scikit-learn estimator (or pipeline) served in process."""

    platform = "sklearn"
    runs_user_code = False
    supports_batching = True

    def __init__(self, model: Any, path: str) -> None:
        self._threads = env_threads(THREADS_VARIABLE)
        self._predict: Any = getattr(model, "predict", None)
        if not callable(self._predict):
            raise ModelLoadError(path, FORMAT, f"the {type(model).__name__} has no predict method")
        features = getattr(model, "n_features_in_", None)
        if not isinstance(features, int):
            raise ModelLoadError(
                path, FORMAT, f"the {type(model).__name__} is not fitted (no n_features_in_)"
            )
        self.inputs = (TensorSpec("input", Datatype.FP64, (-1, features)),)
        self._input_name = "input"
        classifier = _is_classifier(model)
        self._label_name = "label" if classifier else "prediction"
        self._predict_proba: Any = getattr(model, "predict_proba", None) if classifier else None
        label, proba = self._probe(np.zeros((1, features)), path)
        outputs = [_spec_like(self._label_name, label)]
        if proba is not None:
            outputs.append(_spec_like("probabilities", proba))
        else:
            self._predict_proba = None
        self.outputs = tuple(outputs)
        classes = getattr(model, "classes_", None)
        self._classes: Array = classes if isinstance(classes, np.ndarray) else np.empty(0)
        self._fast_label = (
            self._predict_proba is not None
            and self._classes.ndim == 1
            and _final_type(model) in ARGMAX_CLASSIFIERS
        )

    def predict(self, batch: Batch) -> Batch:
        if not getattr(_THREAD, "limited", False):
            _limit_threads(self._threads)
            _THREAD.limited = True
        x = batch[self._input_name]
        if not len(x):
            return empty_outputs(self.outputs)
        if self._predict_proba is None:
            return {self._label_name: self._predict(x)}
        proba = self._predict_proba(x)
        labels = self._labels_from(proba, x) if self._fast_label else self._predict(x)
        return {"label": labels, "probabilities": proba}

    def _labels_from(self, proba: Array, x: Array) -> Array:
        """predict's labels from the probabilities; predict itself decides rows with ties."""
        top = proba.argmax(axis=1)
        labels: Array = self._classes.take(top)
        best = proba[np.arange(len(top)), top]
        ties = np.count_nonzero(proba == best[:, None], axis=1) > 1
        if ties.any():
            labels[ties] = self._predict(x[ties])
        return labels

    def _probe(self, x: Array, path: str) -> tuple[Array, Array | None]:
        try:
            label = np.asarray(self._predict(x))
            proba = None if self._predict_proba is None else self._predict_proba(x)
        except Exception as error:
            raise ModelLoadError(
                path,
                FORMAT,
                f"a test prediction on one row of zeros failed ({library_reason(error)})",
            ) from error
        if not isinstance(proba, np.ndarray) or proba.ndim != 2:
            proba = None  # multi-output classifiers answer a list of arrays: labels only
        return label, proba


def _is_classifier(model: object) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(model))


def _final_type(model: object) -> str:
    """The class name of the estimator that predicts (a pipeline's last step), if scikit-learn's."""
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else model
    cls = type(final)
    return cls.__name__ if cls.__module__.startswith("sklearn.") else ""


def _spec_like(name: str, value: Array) -> TensorSpec:
    return TensorSpec(name, datatype_of(value.dtype), (-1, *value.shape[1:]))
