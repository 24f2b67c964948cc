import asyncio

import pytest

from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.controller.settings import ControllerSettings, state_dir
from mlkube.backends.local.ports import free_port
from mlkube.backends.local.proxy import Router
from mlkube.desired.rollout import RolloutState


def test_settings_come_from_mlkube_variables():
    settings = ControllerSettings.from_env(
        {
            "MLKUBE_BACKOFF_BASE_S": "0.5",
            "MLKUBE_FAILURE_THRESHOLD": "5",
            "MLKUBE_REPLICA_COMMAND": '["python", "-m", "x"]',
        }
    )
    assert settings.backoff_base_s == 0.5
    assert settings.failure_threshold == 5
    assert settings.replica_command == ("python", "-m", "x")
    assert ControllerSettings.from_env({}).backoff_base_s == 10.0


def test_state_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MLKUBE_STATE_DIR", str(tmp_path / "env"))
    assert state_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    assert state_dir(None) == tmp_path / "env"
    monkeypatch.delenv("MLKUBE_STATE_DIR")
    assert state_dir(None).name == ".mlkube"


def test_the_balancer_host_is_loopback_unless_set():
    assert ControllerSettings.from_env({}).balancer_host == "127.0.0.1"
    settings = ControllerSettings.from_env({"MLKUBE_BALANCER_HOST": "0.0.0.0"})
    assert settings.balancer_host == "0.0.0.0"
    with pytest.raises(ValueError, match="MLKUBE_BALANCER_HOST must be an IP address"):
        ControllerSettings.from_env({"MLKUBE_BALANCER_HOST": "localhost:80"})


async def test_the_load_balancer_binds_the_configured_host(tmp_path):
    from .test_api import _doc

    ctrl = Controller(tmp_path, ControllerSettings(balancer_host="127.0.0.2"))
    dep = Deployment("ml/iris", _doc(), Router("ml/iris", hold_s=1.0), RolloutState(stable=1), 1)
    port = free_port()
    try:
        await ctrl.balancer.attach()  # the real balancer process
        await ctrl.listen(dep, port)
        _, writer = await asyncio.open_connection("127.0.0.2", port)  # listening there
        writer.close()
        with pytest.raises(ConnectionRefusedError):  # and not on 127.0.0.1
            await asyncio.open_connection("127.0.0.1", port)
    finally:
        await ctrl.balancer.exit()
        ctrl.store.close()
