"""Model runtimes: load a model file by format, describe its tensors, predict on a batch."""

from mlkube.runtimes.base import Batch, Datatype, Runtime, TensorSpec, example_batch
from mlkube.runtimes.loader import load_runtime

__all__ = ["Batch", "Datatype", "Runtime", "TensorSpec", "example_batch", "load_runtime"]
