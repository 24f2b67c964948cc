"""``{{steps.STEP.outputs.NAME}}`` and ``{{params.NAME}}`` filled in.

Pure: no I/O. The loader already checked every reference; a value missing here (an output a
run did not produce) is a ``KeyError`` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mlkube.spec.job import TrainingJobSpec
from mlkube.spec.pipeline import REFERENCE


class MissingValueError(KeyError):
    """A reference whose value the run does not have."""


def fill(text: str, params: Mapping[str, str], outputs: Mapping[str, Mapping[str, str]]) -> str:
    """``text`` with each reference replaced by its value."""

    def value(match: re.Match[str]) -> str:
        ref = match.group(1)
        parts = ref.split(".")
        if parts[0] == "params":
            return params[parts[1]]
        step, name = parts[1], parts[3]
        try:
            return outputs[step][name]
        except KeyError:
            raise MissingValueError(f"step {step} has no output {name} in this run") from None

    return REFERENCE.sub(value, text)


def filled_job(
    job: TrainingJobSpec,
    params: Mapping[str, str],
    outputs: Mapping[str, Mapping[str, str]],
) -> TrainingJobSpec:
    """The job with its arguments and environment filled in."""
    run = job.run.model_copy(update={"args": tuple(fill(a, params, outputs) for a in job.run.args)})
    env = {k: fill(v, params, outputs) for k, v in job.env.items()}
    return job.model_copy(update={"run": run, "env": env})
