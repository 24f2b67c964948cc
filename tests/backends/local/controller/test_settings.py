from mlkube.backends.local.controller.settings import ControllerSettings, state_dir


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
