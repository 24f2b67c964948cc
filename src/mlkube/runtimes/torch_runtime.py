"""The PyTorch runtime: TorchScript (``torch.jit.save``) and torch.export (``.pt2``) programs.

Needs the ``torch`` extra. Runs on CUDA when the replica was given a GPU and torch sees it (see
`mlkube.runtimes.device`; a GPU the replica was not given is left alone), else on the CPU with
``MLKUBE_TORCH_THREADS`` threads (default 1: replicas scale by processes).

Files: ``.pt2`` loads with ``torch.export.load``; any other ending (``.pt``, ``.pth``,
``.torchscript``) with ``torch.jit.load``.

Inputs and outputs are described, first match wins, by:

1. a sidecar JSON file beside the model, named after it plus ``.json`` (``mlp.pt`` →
   ``mlp.pt.json``)::

       {"inputs":  [{"name": "input",  "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}],
        "supportsBatching": true}

   ``outputs`` and ``supportsBatching`` (default true) are optional;
2. for ``.pt2``, the exported program's own signature (dtypes, and -1 for dynamic axes);
3. the default: one input ``input``, FP32, [-1, -1].

Inputs are passed to the module positionally, in the order described. Undeclared outputs are
read from a test prediction on zeros shaped like the inputs, made at load time: one tensor is
``output``; a tuple or list gives ``output_0``, ``output_1``, ...; a dict keeps its keys.

Batched float math can differ from one-row math in the last bit (the kernels differ with the
batch size), so merged-rows and per-row predictions agree to ~1e-7 relative, not bit for bit.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mlkube.errors import InvalidInputError, ModelLoadError
from mlkube.runtimes.base import (
    NUMPY_DTYPES,
    Array,
    Batch,
    Datatype,
    TensorSpec,
    datatype_of,
    example_batch,
)
from mlkube.runtimes.device import DeviceChoice, device_for, log_choice
from mlkube.runtimes.support import (
    as_dtype,
    check_file,
    env_threads,
    library_reason,
    load_failed,
    require_module,
    tensor_specs,
)

FORMAT = "pytorch"
THREADS_VARIABLE = "MLKUBE_TORCH_THREADS"
"""Environment variable: torch intra-op threads on the CPU (default 1)."""
DEFAULT_INPUTS = (TensorSpec("input", Datatype.FP32, (-1, -1)),)
# torch's own words for an input whose shape the module cannot use (it raises a plain
# RuntimeError): "mat1 and mat2 shapes cannot be multiplied", "The size of tensor a (3) must
# match ...", "Expected 3D (unbatched) or 4D (batched) input", "expected input ... dimension".
_INPUT_FAULT = re.compile(
    r"shapes? cannot be|size of tensor|must match the size|\bdimension|\d+D .*input",
    re.IGNORECASE,
)


class TorchRuntime:
    """A TorchScript module or exported program served in process."""

    platform = "pytorch"
    runs_user_code = False

    def __init__(self, path: str) -> None:
        file = check_file(path, FORMAT)
        self._torch = torch = require_module("torch", "torch", path, FORMAT)
        self.device: DeviceChoice = device_for(lambda: cuda_missing(torch), path, FORMAT)
        log_choice(self.platform, path, self.device)
        self._device = self.device.device
        if self._device == "cpu":
            torch.set_num_threads(env_threads(THREADS_VARIABLE))
        sidecar = _read_sidecar(file)
        self._module, signature = _load_module(torch, file, self._device)
        self.supports_batching = bool(sidecar.get("supportsBatching", True))
        self.inputs = _specs(sidecar, "inputs", path) or signature or DEFAULT_INPUTS
        self._feeds = tuple(
            (spec.name, np.dtype(NUMPY_DTYPES[spec.datatype])) for spec in self.inputs
        )
        self.outputs = _specs(sidecar, "outputs", path) or self._probe_outputs(path)
        self._output_names = tuple(spec.name for spec in self.outputs)

    def predict(self, batch: Batch) -> Batch:
        torch = self._torch
        tensors = [torch.from_numpy(_writable(as_dtype(batch[n], d))) for n, d in self._feeds]
        if self._device != "cpu":
            tensors = [t.to(self._device) for t in tensors]
        with torch.inference_mode():
            try:
                result = self._module(*tensors)
            except RuntimeError as error:
                if not _INPUT_FAULT.search(str(error)):
                    raise
                reason = library_reason(error)
                raise InvalidInputError(f"the model refused the input: {reason}") from error
        return self._named(result)

    def _named(self, result: Any) -> Batch:
        names = self._output_names
        if isinstance(result, dict):
            return {name: _numpy(result[name]) for name in names}
        if isinstance(result, tuple | list):
            return {name: _numpy(value) for name, value in zip(names, result, strict=True)}
        return {names[0]: _numpy(result)}

    def _probe_outputs(self, path: str) -> tuple[TensorSpec, ...]:
        self._output_names = ()
        torch = self._torch
        zeros = example_batch(self.inputs).values()
        tensors = [torch.from_numpy(v).to(self._device) for v in zeros]
        try:
            with torch.inference_mode():
                result = self._module(*tensors)
        except Exception as error:
            raise ModelLoadError(
                path,
                FORMAT,
                "a test prediction on zeros shaped like the inputs "
                f"{[s.as_dict() for s in self.inputs]} failed ({library_reason(error)}); "
                f"describe the inputs in {path}.json",
            ) from error
        if isinstance(result, dict):
            values = {str(k): _numpy(v) for k, v in result.items()}
        elif isinstance(result, tuple | list):
            values = {f"output_{i}": _numpy(v) for i, v in enumerate(result)}
        else:
            values = {"output": _numpy(result)}
        return tuple(
            TensorSpec(n, datatype_of(v.dtype), (-1, *v.shape[1:])) for n, v in values.items()
        )


def cuda_missing(torch: Any) -> str | None:
    """None when torch can run on a CUDA device, else why not (for `device_for`)."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"torch {torch.__version__} was built without CUDA (a CPU-only wheel)"
    return f"torch {torch.__version__} finds no usable CUDA device (no driver or no GPU)"


def _load_module(torch: Any, file: Path, device: str) -> tuple[Any, tuple[TensorSpec, ...]]:
    """The callable module, and the input specs its file describes (none for TorchScript)."""
    path = str(file)
    if file.suffix.lower() == ".pt2":
        try:
            program = torch.export.load(path)
            module = program.module()
        except Exception as error:
            raise load_failed(path, FORMAT, "torch.export program (.pt2)", error) from error
        if device != "cpu":
            module = module.to(device)
        return module, _program_inputs(program)
    try:
        module = torch.jit.load(path, map_location=device)
    except Exception as error:
        if _saved_with_torch_save(file):
            raise ModelLoadError(
                path,
                FORMAT,
                "the file was written by torch.save (weights or a pickled module), which holds "
                "no program to run; save the model with torch.jit.script(model).save(PATH) "
                "(TorchScript) or torch.export.save(torch.export.export(model, example), "
                "PATH.pt2)",
            ) from error
        raise load_failed(path, FORMAT, "TorchScript file", error) from error
    module.eval()
    return module, ()


def _saved_with_torch_save(file: Path) -> bool:
    """A ``torch.save`` archive (a pickle in a zip, no ``code/``), not TorchScript."""
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    pickled = any(name.endswith("/data.pkl") for name in names)
    return pickled and not any("/code/" in name for name in names)


def _program_inputs(program: Any) -> tuple[TensorSpec, ...]:
    """Input specs from an exported program's placeholders: dtype, -1 for symbolic sizes."""
    names = list(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in names:
            continue
        value = node.meta.get("val")
        datatype = _torch_datatype(getattr(value, "dtype", None))
        if datatype is None or not getattr(value, "shape", None):
            return ()
        shape = (-1, *(d if isinstance(d, int) else -1 for d in value.shape[1:]))
        name = "input" if len(names) == 1 else node.name
        specs.append(TensorSpec(name, datatype, shape))
    return tuple(specs)


def _torch_datatype(dtype: Any) -> Datatype | None:
    text = str(dtype).removeprefix("torch.")
    try:
        return datatype_of(np.dtype(text)) if text != "None" else None
    except TypeError:
        return None


def _read_sidecar(file: Path) -> dict[str, Any]:
    sidecar = file.with_name(file.name + ".json")
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(
            str(sidecar), FORMAT, f"the sidecar is not valid JSON ({library_reason(error)})"
        ) from error
    keys = set(data) if isinstance(data, dict) else set()
    unknown = keys - {"inputs", "outputs", "supportsBatching"}
    if not isinstance(data, dict) or unknown:
        raise ModelLoadError(
            str(sidecar),
            FORMAT,
            "the sidecar must be a JSON object with inputs, outputs and supportsBatching"
            + (f"; unknown keys: {sorted(unknown)}" if unknown else ""),
        )
    return data


def _specs(sidecar: dict[str, Any], key: str, path: str) -> tuple[TensorSpec, ...]:
    if key not in sidecar:
        return ()
    try:
        return tensor_specs(sidecar[key], key)
    except ValueError as error:
        raise ModelLoadError(path + ".json", FORMAT, f"the sidecar's {error}") from error


def _writable(value: Array) -> Array:
    """torch.from_numpy warns on read-only arrays (e.g. views of a request body): copy those."""
    return value if value.flags.writeable else value.copy()


def _numpy(value: Any) -> Array:
    return np.asarray(value.detach().cpu().numpy())
