import asyncio
import stat

import pytest

from mlkube.backends.local.controller.api import Client, serve_api, write_token
from mlkube.errors import BackendError


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
    token = write_token(tmp_path)

    async def handler(method, path, body):
        return 200, {"path": path}

    server = await serve_api(handler, token)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "controller.json").write_text(f'{{"pid": 1, "port": {port}}}')
    good = Client(tmp_path)
    assert await asyncio.to_thread(good.call, "GET", "/status") == {"path": "/status"}
    bad = Client(tmp_path)
    bad.token = "wrong"  # noqa: S105 - a deliberately wrong token
    with pytest.raises(BackendError, match="missing or wrong token"):
        await asyncio.to_thread(bad.call, "GET", "/status")
    server.close()
