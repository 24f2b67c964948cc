import pytest

from mlkube.backends.local.decisions.admission import Capacity, Claim, QuotaLimits, admit

GI = 2**30
CAP = Capacity(cpu_millis=1750, memory_bytes=4 * GI, gpus=(0, 1))


def claim(name, ns="default", *, cpu=500, mem=GI, gpus=0, held=(), priority=0, preempts=True):
    return Claim(name, ns, priority, cpu, mem, gpus, tuple(held), preempts)


def test_fits_when_requests_are_below_allocatable():
    verdict = admit(claim("new"), [claim("a"), claim("b")], CAP, {})
    assert verdict.admitted
    assert verdict.victims == ()


def test_pending_names_the_resource_and_the_numbers():
    verdict = admit(claim("new"), [claim("a"), claim("b"), claim("c")], CAP, {})
    assert not verdict.admitted
    assert "insufficient cpu (requests 500m, 250m of 1750m allocatable free)" in verdict.reason


def test_memory_shortage_is_reported():
    verdict = admit(claim("new", cpu=0, mem=3 * GI), [claim("a", cpu=0, mem=2 * GI)], CAP, {})
    assert not verdict.admitted
    assert verdict.reason.startswith("insufficient memory")


def test_gpus_are_whole_and_exclusive():
    first = admit(claim("g1", gpus=1), [], CAP, {})
    assert first.gpus == (0,)
    second = admit(claim("g2", gpus=1), [claim("g1", gpus=1, held=(0,))], CAP, {})
    assert second.gpus == (1,)
    third = admit(
        claim("g3", gpus=1),
        [claim("g1", gpus=1, held=(0,)), claim("g2", gpus=1, held=(1,))],
        CAP,
        {},
    )
    assert not third.admitted
    assert "nvidia.com/gpu" in third.reason


def test_higher_priority_preempts_the_fewest_lowest_replicas():
    placed = [claim("low1", priority=0), claim("low2", priority=0), claim("mid", priority=5)]
    verdict = admit(claim("high", priority=10), placed, CAP, {})
    assert verdict.admitted
    assert verdict.victims == ("low1",)


def test_equal_priority_never_preempts():
    placed = [claim("a", priority=5), claim("b", priority=5), claim("c", priority=5)]
    assert not admit(claim("new", priority=5), placed, CAP, {}).admitted


def test_preemption_policy_never_stays_pending():
    placed = [claim("a"), claim("b"), claim("c")]
    verdict = admit(claim("new", priority=10, preempts=False), placed, CAP, {})
    assert not verdict.admitted


@pytest.mark.parametrize(
    ("quota", "fragment"),
    [
        pytest.param(
            QuotaLimits(cpu_millis=900),
            "requests.cpu used 500 + requested 500 > hard 900",
            id="cpu",
        ),
        pytest.param(QuotaLimits(memory_bytes=GI), "requests.memory", id="memory"),
        pytest.param(QuotaLimits(pods=1), "pods used 1 + requested 1 > hard 1", id="pods"),
    ],
)
def test_quota_caps_the_namespace_total(quota, fragment):
    verdict = admit(claim("new", "ml"), [claim("a", "ml")], CAP, {"ml": quota})
    assert not verdict.admitted
    assert fragment in verdict.reason
    assert "namespace 'ml'" in verdict.reason


def test_quota_counts_only_its_own_namespace_and_preemption_does_not_help():
    placed = [claim("a", "other"), claim("b", "ml", priority=0)]
    assert admit(claim("new", "ml"), placed, CAP, {"ml": QuotaLimits(pods=2)}).admitted
    high = claim("new", "ml", priority=100)
    assert not admit(high, placed, CAP, {"ml": QuotaLimits(pods=1)}).admitted
