import asyncio
import stat

import pytest

from mlkube.backends.local.controller.api import Client, write_token
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.errors import BackendError
from mlkube.testing.control_api import served


def test_token_file_is_created_readable_by_its_owner_only(tmp_path):
    token = write_token(tmp_path)
    mode = stat.S_IMODE((tmp_path / "token").stat().st_mode)
    assert mode == 0o600
    assert (tmp_path / "token").read_text() == token
    assert write_token(tmp_path) != token, "each controller gets a fresh token"


def test_client_refuses_a_token_file_others_can_read(tmp_path):
    write_token(tmp_path)
    (tmp_path / "token").chmod(0o644)
    (tmp_path / "controller.json").write_text('{"pid": 1, "port": 1}')
    with pytest.raises(BackendError, match="readable by others"):
        Client(tmp_path)


@pytest.mark.integration
async def test_requests_without_the_token_are_refused(tmp_path):
    ctrl = Controller(tmp_path, ControllerSettings())
    try:
        async with served(ctrl) as good:
            assert await asyncio.to_thread(good.call, "GET", "/healthz") == {"ok": True}
            with Client(tmp_path) as bad:
                bad.token = "wrong"  # noqa: S105 - a deliberately wrong token
                with pytest.raises(BackendError, match="missing or wrong token"):
                    await asyncio.to_thread(bad.call, "GET", "/status")
    finally:
        ctrl.store.close()
