"""The shared commands against ``FakeBackend``: what they print and which calls they make."""

from __future__ import annotations

import json

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from mlkube.backends.base import BackendSelection, RolloutStatus, Table
from mlkube.cli import cli, main
from mlkube.cli.output import print_tables
from mlkube.testing.fake_backend import Call, FakeBackend

SHARED = ("apply", "status", "scale", "down", "delete", "logs", "events", "rollout")


def run(fake: FakeBackend, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj={"backend_factory": fake.factory})


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "iris.yaml"
    path.write_text("not read by the fake\n", encoding="utf-8")
    return str(path)


def test_apply_prints_each_change_and_waits_only_when_asked(spec):
    fake = FakeBackend()
    done = run(fake, "apply", spec)
    assert done.exit_code == 0, done.output
    assert done.stdout == "fakedeployment/iris configured (revision 2)\n"
    assert fake.calls == [Call("apply", ((spec,),), {"dry_run": False})]

    waited = run(fake, "apply", spec, "--wait", "--timeout", "12")
    assert waited.exit_code == 0, waited.output
    assert waited.stdout.splitlines() == [
        "fakedeployment/iris configured (revision 3)",
        "iris: rolled out",
    ]
    assert fake.calls[-1].method == "wait_for_rollouts"
    assert fake.calls[-1].kwargs == {"timeout_s": 12.0}


def test_apply_dry_run_never_waits(spec):
    fake = FakeBackend()
    done = run(fake, "apply", spec, "--dry-run", "--wait")
    assert done.exit_code == 0, done.output
    assert done.stdout == "fakedeployment/iris configured (revision 1) (dry run)\n"
    assert [c.method for c in fake.calls] == ["apply"]
    assert fake.calls[0].kwargs == {"dry_run": True}


def test_status_table_prints_the_tables_then_the_notes():
    fake = FakeBackend({"iris": 2, "wine": 1})
    done = run(fake, "status")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == [
        "fake deployments",
        "NAME  READY  REVISION",
        "iris  2/2    1",
        "wine  1/1    1",
        "iris: nothing to autoscale",
        "wine: nothing to autoscale",
    ]
    assert fake.calls == [Call("status", (None,))]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_status_json_and_yaml_print_the_document(fmt):
    fake = FakeBackend()
    done = run(fake, "status", "iris", "-o", fmt)
    assert done.exit_code == 0, done.output
    parsed = json.loads(done.stdout) if fmt == "json" else yaml.safe_load(done.stdout)
    assert parsed == [{"name": "iris", "replicas": 2, "revision": 1}]
    assert fake.calls == [Call("status", ("iris",))]


def test_scale_prints_the_new_count():
    fake = FakeBackend()
    done = run(fake, "scale", "iris", "3")
    assert done.exit_code == 0, done.output
    assert done.stdout == "fakedeployment/iris scaled to 3\n"
    assert fake.calls == [Call("scale", ("iris", 3))]
    assert fake.deployments == {"iris": 3}


def test_delete_one_and_down_all():
    fake = FakeBackend({"iris": 2, "wine": 1})
    one = run(fake, "delete", "iris")
    assert one.exit_code == 0, one.output
    assert one.stdout == "fakedeployment/iris stopped\n"
    rest = run(fake, "down")
    assert rest.exit_code == 0, rest.output
    assert rest.stdout.splitlines() == ["fakedeployment/wine stopped", "fake stopped"]
    assert fake.calls == [Call("delete", ("iris",)), Call("delete", (None,))]


def test_down_without_a_name_where_the_backend_needs_one_is_a_usage_error():
    fake = FakeBackend(unsupported=["delete"])
    done = run(fake, "down")
    assert done.exit_code == 2
    assert "the fake backend cannot delete: use another one" in done.output


def test_logs_pass_the_options_and_print_every_line():
    fake = FakeBackend()
    done = run(fake, "logs", "iris", "--replica", "1", "--since", "5m", "-f", "--stderr")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == ['{"msg": "ready"}', '{"msg": "served"}']
    assert "warning: following is fake" in done.stderr
    options = {"replica": "1", "since_s": 300.0, "follow": True, "stderr": True}
    assert fake.calls == [Call("logs", ("iris",), options)]


def test_events_print_utc_time_type_reason_object_and_repeats():
    fake = FakeBackend()
    done = run(fake, "events", "iris", "--limit", "5")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == [
        "00:00:01  Normal   Created              revision 1, 2 replicas",
        "00:01:02  Warning  BackOff              Pod/iris-0: restarting (x3)",
    ]
    assert fake.calls == [Call("events", ("iris",), {"limit": 5})]


def test_rollout_status_history_and_undo(spec):
    fake = FakeBackend()
    done = run(fake, "rollout", "status", "iris")
    assert done.stdout == "revision 1 serves all traffic (Complete)\n"
    run(fake, "apply", spec)
    moving = run(fake, "rollout", "status", "iris")
    assert moving.stdout == (
        "Canary 1 → 2: Progressing, step 1, traffic: revision 1 90%, revision 2 10% analysing\n"
    )
    history = run(fake, "rollout", "history", "iris")
    assert history.stdout.splitlines() == [
        "  REV  STATUS      CHANGE            MODEL",
        "    1  -           -                 model-1.onnx",
        "*   2  Complete    -                 model-2.onnx",
    ]
    rows = json.loads(run(fake, "rollout", "history", "iris", "-o", "json").stdout)
    assert rows[1] == {
        "revision": 2,
        "created": 1767225602.0,
        "status": "Complete",
        "reason": "",
        "model": "model-2.onnx",
        "current": True,
        "change": "",
    }
    undo = run(fake, "rollout", "undo", "iris", "--to-revision", "1")
    assert undo.exit_code == 0, undo.output
    assert undo.stdout == "fakedeployment/iris: rolling back to revision 1\n"
    assert [c.method for c in fake.calls] == [
        "rollout_status",
        "apply",
        "rollout_status",
        "rollout_history",
        "rollout_history",
        "rollout_undo",
    ]
    assert fake.calls[-1].kwargs == {"to_revision": 1}


def test_the_target_options_reach_the_factory_once_per_command():
    fake = FakeBackend()
    run(fake, "events", "iris", "--target", "kubernetes", "--context", "kind-ml", "-n", "ml")
    run(fake, "status", "--state-dir", "/tmp/state")
    assert fake.selections == [
        BackendSelection("kubernetes", None, "kind-ml", "ml"),
        BackendSelection("local", "/tmp/state", None, None),
    ]


def test_an_unsupported_operation_prints_error_and_exits_1(capsys):
    fake = FakeBackend(unsupported=["events"])
    with pytest.raises(SystemExit) as exited:
        main(["events", "iris"], obj={"backend_factory": fake.factory})
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.err == "error: the fake backend cannot events: use another one\n"
    assert captured.out == ""


def test_a_backend_error_of_a_shared_command_exits_1(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["scale", "nope", "1"], obj={"backend_factory": FakeBackend().factory})
    assert exited.value.code == 1
    assert capsys.readouterr().err == "error: no deployment named 'nope'\n"


def test_tables_fit_80_columns(capsys):
    wide = Table(
        ("NAME", "NAMESPACE", "DEPLOYMENT", "READY", "UP-TO-DATE", "AUTOSCALER", "SERVICE"),
        (("ml-model", "ml", "ml-model", "1/1", "1", "hpa 1-3", "svc NodePort 8501:30050 " * 3),),
    )
    print_tables([wide])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 2  # the long cell wrapped instead of running past column 80
    assert max(len(line) for line in lines) <= 80
    assert all(line == line.rstrip() for line in lines)


@pytest.mark.parametrize("name", [*SHARED, "up"])
def test_every_shared_command_help_has_an_example(name):
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert "mlkube " in (command.help or "") and "Example" in (command.help or ""), name
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            assert "Example" in (sub.help or ""), f"{name} {sub.name}"


def test_status_watch_asks_for_a_fresh_status_every_interval():
    from mlkube.cli.deployments import watch_frames
    from mlkube.clock import ManualClock

    fake, clock = FakeBackend(), ManualClock(start=0.0)
    frames = list(watch_frames(fake, "iris", 2.0, clock, limit=3))
    assert len(frames) == 3
    assert [c.method for c in fake.calls] == ["status"] * 3
    assert clock.now == 4.0  # two waits between three frames
    tables, _notes = frames[0]
    assert tables  # what `status` prints, redrawn


def test_status_watch_does_not_go_with_an_output_format():
    done = run(FakeBackend(), "status", "--watch", "-o", "json")
    assert done.exit_code == 2
    assert "--watch redraws the table" in done.output


def test_rollout_promote_and_abort_print_where_the_rollout_stands(spec):
    fake = FakeBackend()
    refused = run(fake, "rollout", "promote", "iris")
    assert "no canary in progress" in str(refused.exception)
    run(fake, "apply", spec)
    promoted = run(fake, "rollout", "promote", "iris")
    assert promoted.stdout == (
        "Canary 1 → 2: Progressing, step 2, traffic: revision 1 50%, revision 2 50% promoted\n"
    )
    aborted = run(fake, "rollout", "abort", "iris")
    assert aborted.stdout == "revision 1 serves all traffic (RolledBack) aborted\n"
    run(fake, "apply", spec)
    run(fake, "rollout", "promote", "iris", "--full", "--prometheus", "http://127.0.0.1:9")
    assert fake.calls[-1] == Call("rollout_promote", ("iris",), {"full": True})
    assert fake.selections[-1].prometheus_url == "http://127.0.0.1:9"


def test_rollout_status_watch_prints_each_change_until_the_rollout_ends(spec):
    fake = FakeBackend()
    run(fake, "apply", spec)
    phases = iter(["Progressing", "Progressing", "Complete"])

    def status(name: str) -> RolloutStatus:
        phase = next(phases)
        return RolloutStatus(name, phase, 1, 2 if phase == "Progressing" else None, "Canary")

    fake.rollout_status = status  # type: ignore[method-assign]
    watched = run(fake, "rollout", "status", "iris", "--watch", "--interval", "0")
    assert watched.exit_code == 0, watched.output
    assert watched.stdout.splitlines() == [
        "Canary 1 → 2: Progressing",
        "revision 1 serves all traffic (Complete)",
    ]
