from mlkube.backends.local.store import EventRow, RevisionRow, Store


def test_state_survives_reopening(tmp_path):
    store = Store(tmp_path / "state.db")
    store.put_deployment("ns/a", {"desired": 2})
    store.add_revision("ns/a", RevisionRow(1, {"spec": {}}, "/src", 1.0, "", ""))
    store.set_revision_status("ns/a", 1, "Failed", "boom")
    store.put_replica("ns/a", "a-1-x", {"pid": 42})
    store.add_event("ns/a", EventRow(2.0, "Normal", "Created", "hello"))
    store.close()
    again = Store(tmp_path / "state.db")
    assert again.deployments() == {"ns/a": {"desired": 2}}
    assert again.revisions("ns/a")[0].status == "Failed"
    assert again.replicas("ns/a") == [{"pid": 42}]
    assert again.events("ns/a")[0].message == "hello"
    again.delete_deployment("ns/a")
    assert again.deployments() == {}
    assert again.replicas("ns/a") == []


def test_events_are_capped_per_deployment(tmp_path, monkeypatch):
    import mlkube.backends.local.store as module

    monkeypatch.setattr(module, "EVENTS_KEPT", 3)
    store = Store(tmp_path / "s.db")
    for i in range(6):
        store.add_event("k", EventRow(float(i), "Normal", "R", str(i)))
    assert [e.message for e in store.events("k")] == ["3", "4", "5"]
