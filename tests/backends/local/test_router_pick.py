"""``Router.pick``: the replica a request goes to, skipping the ones it may not go to."""

from __future__ import annotations

from mlkube.backends.local.proxy import Backend, Router


def router_of(*names: str) -> Router:
    router = Router("ml/iris", hold_s=5)
    router.configure(
        [Backend(n, 1000 + i, 1) for i, n in enumerate(names)], dict.fromkeys(names, 1.0)
    )
    return router


def test_round_robin_over_routable_replicas() -> None:
    router = router_of("a", "b")
    picked = [router.pick(frozenset(), False, 0.0) for _ in range(4)]
    assert [b.name for b in picked if b is not None] == ["a", "b", "a", "b"]


def test_ejected_and_tried_replicas_are_skipped_until_none_is_left() -> None:
    router = router_of("a", "b", "c")
    router.backends["a"].ejected_until = 10.0
    for _ in range(6):
        backend = router.pick(frozenset({"b"}), False, 5.0)
        assert backend is not None and backend.name == "c"
    assert router.pick(frozenset({"b", "c"}), False, 5.0) is None  # a is still ejected
    backend = router.pick(frozenset({"b", "c"}), False, 10.0)  # its ejection has ended
    assert backend is not None and backend.name == "a"


def test_a_replica_marked_draining_is_never_picked() -> None:
    router = router_of("a", "b")
    router.backends["b"].draining = True  # as a configure with draining=True leaves it
    assert {router.pick(frozenset(), False, 0.0).name for _ in range(4)} == {"a"}  # type: ignore[union-attr]
    router.backends["a"].ejected_until = 1.0
    assert router.pick(frozenset(), False, 0.0) is None


def test_no_routes_picks_nothing() -> None:
    assert router_of().pick(frozenset(), False, 0.0) is None
