"""The model set's lookup (which version a request reaches) and the version policy. Pure."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mlkube.batching.batcher import Batcher, BatcherSettings
from mlkube.clock import SystemClock
from mlkube.errors import ModelNotFoundError, ModelNotReadyError
from mlkube.runtimes.base import Datatype, TensorSpec
from mlkube.serving.models import (
    ModelSet,
    NotFound,
    ServedVersion,
    Unavailable,
    VersionState,
)
from mlkube.spec.model import VersionPolicy


class _Observer:
    def batch_done(self, *, rows: int, requests: int, predict_s: float) -> None:
        pass

    def queue_wait(self, seconds: float) -> None:
        pass

    def predict_failed(self) -> None:
        pass


class _Doubling:
    """A runtime that doubles its input: enough to tell versions apart by their answers."""

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    inputs = (TensorSpec("x", Datatype.FP32, (-1, 1)),)
    outputs = (TensorSpec("y", Datatype.FP32, (-1, 1)),)
    supports_batching = True
    runs_user_code = False
    platform = "test"

    def predict(self, batch):
        return {"y": batch["x"] * self.factor}


def _version(model: str, number: int, factor: float = 2.0) -> ServedVersion:
    runtime = _Doubling(factor)
    batcher = Batcher(runtime.predict, BatcherSettings(), clock=SystemClock(), observer=_Observer())
    return ServedVersion(model, number, runtime, batcher)


def _set_with(*versions: tuple[str, int]) -> ModelSet:
    models = ModelSet(("iris", "wine"))
    for name, number in versions:
        models.publish(_version(name, number), "test")
    return models


# the policy --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "present", "picked"),
    [
        ({}, [1, 2, 3], (3,)),
        ({"latest": 2}, [3, 1, 2], (3, 2)),
        ({"latest": 5}, [1, 2], (2, 1)),
        ({"all": True}, [2, 7, 1], (7, 2, 1)),
        ({"specific": [1, 3]}, [1, 2, 3], (3, 1)),
        ({"specific": [4]}, [1, 2, 3], ()),
        ({}, [], ()),
    ],
)
def test_the_policy_picks_versions_as_tf_serving_does(policy, present, picked):
    assert VersionPolicy.model_validate(policy).select(present) == picked


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"latest": 1, "all": True}, "set one of latest, all, specific"),
        ({"all": False}, "all: false means nothing"),
        ({"specific": []}, "at least one version"),
        ({"specific": [1, 1]}, "lists a version twice"),
        ({"latest": 0}, "greater than or equal to 1"),
        ({"newest": 1}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_policy_is_refused_with_a_reason(policy, message):
    with pytest.raises(ValueError, match=message):
        VersionPolicy.model_validate(policy)


# lookup ------------------------------------------------------------------------------------
def test_no_version_means_the_newest_available_one():
    models = _set_with(("iris", 1), ("iris", 2), ("wine", 7))
    found = models.lookup("iris", None)
    assert isinstance(found, ServedVersion) and found.version == 2
    assert models.require("iris", "1").version == 1
    assert models.require("wine", "").version == 7


def test_default_reaches_the_first_model():
    models = _set_with(("iris", 4), ("wine", 1))
    assert models.require("default").model == "iris"
    assert models.require("default", 4).version == 4


def test_an_unknown_model_or_version_is_not_found_and_says_what_is_served():
    models = _set_with(("iris", 1), ("iris", 2), ("wine", 1))
    unknown = models.lookup("mnist")
    assert isinstance(unknown, NotFound)
    assert "'iris', 'wine'" in unknown.message
    missing = models.lookup("iris", "9")
    assert isinstance(missing, NotFound)
    assert "served versions: 1, 2" in missing.message
    with pytest.raises(ModelNotFoundError):
        models.require("iris", "label:stable")


def test_a_loading_model_or_version_is_unavailable_not_missing():
    models = ModelSet(("iris",))
    models.set_state("iris", 1, VersionState.LOADING)
    assert isinstance(models.lookup("iris"), Unavailable)
    assert isinstance(models.lookup("iris", 1), Unavailable)
    with pytest.raises(ModelNotReadyError):
        models.require("iris")
    assert not models.ready


def test_a_failed_version_is_never_served_and_its_error_is_kept():
    models = _set_with(("iris", 1))
    models.set_state("iris", 2, VersionState.END, "the file is truncated")
    assert models.require("iris").version == 1
    failed = models.lookup("iris", 2)
    assert isinstance(failed, NotFound)
    assert "failed to load: the file is truncated" in failed.message
    status = {s.version: s for s in models.known("iris").status_list()}
    assert status[2].failed and status[2].state is VersionState.END
    assert status[1].state is VersionState.AVAILABLE


def test_a_retired_version_takes_no_new_request_and_the_next_newest_serves():
    models = _set_with(("iris", 1), ("iris", 2))
    retired = models.retire("iris", 2)
    assert retired is not None and retired.version == 2
    assert models.require("iris").version == 1
    assert isinstance(models.lookup("iris", 2), NotFound)
    assert models.known("iris").statuses[2].state is VersionState.UNLOADING


def test_an_unloaded_model_is_unavailable_and_leaves_the_server_ready():
    models = _set_with(("iris", 1), ("wine", 1))
    models.retire("wine", 1)
    models.known("wine").unloaded = True
    assert isinstance(models.lookup("wine"), Unavailable)
    assert models.ready


async def test_a_version_drains_its_requests_in_flight():
    served = _version("iris", 1, factor=3.0)
    answers = []
    served.submit({"x": np.ones((1, 1), np.float32)}, lambda out, err: answers.append(out))
    assert served.in_flight == 1
    assert await served.drained(5.0)
    assert served.in_flight == 0
    first = answers[0]
    assert first is not None and first["y"].tolist() == [[3.0]]
    await served.batcher.close()
    await asyncio.sleep(0)
