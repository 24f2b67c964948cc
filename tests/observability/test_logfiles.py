"""Rotating log files, copytruncate rotation of a file another process appends to, payload
logging with sampling and redaction, and the JSON line schema."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
from typing import Any

import pytest

from mlkube.observability.logfiles import (
    RotatingFile,
    pump,
    read_rotated,
    rotate_copytruncate,
    rotated_files,
)
from mlkube.observability.logging import AccessLog, JsonFormatter, PayloadLog, redact
from mlkube.spec.observability import RequestLoggingSpec


def test_rotating_file_rotates_at_line_ends_and_keeps_n_backups(tmp_path):
    path = tmp_path / "r.log"
    sink = RotatingFile(path, max_bytes=20, backups=2)
    for i in range(12):
        sink.write(f"line {i:02d} .....\n".encode())  # 16 bytes
    sink.close()
    files = rotated_files(path)
    assert [f.name for f in files] == ["r.log.2", "r.log.1", "r.log"]
    lines = list(read_rotated(path))
    assert all(line.endswith(".....\n") for line in lines)  # never cut mid-line
    assert [int(line.split()[1]) for line in lines] == list(range(12 - len(lines), 12))
    assert all(f.stat().st_size <= 32 for f in files)


def test_a_partial_line_is_not_split_across_files(tmp_path):
    path = tmp_path / "r.log"
    sink = RotatingFile(path, max_bytes=4, backups=1)
    for chunk in (b"abcdef", b"ghi\n", b"next\n"):
        sink.write(chunk)
    sink.close()
    assert (tmp_path / "r.log.1").read_bytes() == b"abcdefghi\n"
    assert path.read_bytes() == b"next\n"


def test_reopening_continues_the_size(tmp_path):
    path = tmp_path / "r.log"
    path.write_bytes(b"x" * 10 + b"\n")
    sink = RotatingFile(path, max_bytes=8, backups=1)
    sink.write(b"new\n")
    sink.close()
    assert path.read_bytes() == b"new\n"


def test_zero_backups_discards(tmp_path):
    path = tmp_path / "r.log"
    sink = RotatingFile(path, max_bytes=4, backups=0)
    sink.write(b"12345\n")
    sink.write(b"ab\n")
    sink.close()
    assert rotated_files(path) == [path] and path.read_bytes() == b"ab\n"
    with pytest.raises(ValueError, match="max_bytes must be at least 1"):
        RotatingFile(path, max_bytes=0, backups=0)


async def test_pump_copies_a_pipe_line_by_line(tmp_path):
    reader = asyncio.StreamReader()
    sink = RotatingFile(tmp_path / "r.log", max_bytes=10, backups=3)
    reader.feed_data(b"one\ntwo\nthree\nfour and more\nlast without newline")
    reader.feed_eof()
    await pump(reader, sink)
    sink.close()
    lines = [line.rstrip("\n") for line in read_rotated(tmp_path / "r.log")]
    assert lines == ["one", "two", "three", "four and more", "last without newline"]


def test_copytruncate_with_an_appending_writer(tmp_path):
    path = tmp_path / "r.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # as the replica's stdout
    try:
        os.write(fd, b"a" * 50 + b"\n")
        assert rotate_copytruncate(path, max_bytes=100, backups=2) is False
        os.write(fd, b"b" * 60 + b"\n")
        assert rotate_copytruncate(path, max_bytes=100, backups=2) is True
        os.write(fd, b"after\n")  # O_APPEND: lands at offset 0 of the truncated file
    finally:
        os.close(fd)
    assert path.read_bytes() == b"after\n"
    assert (tmp_path / "r.log.1").read_bytes().count(b"\n") == 2
    assert rotate_copytruncate(tmp_path / "missing.log", max_bytes=1, backups=1) is False


def test_log_files_and_their_rotations_are_owner_only(tmp_path):
    import stat

    sink = RotatingFile(tmp_path / "r.log", max_bytes=10, backups=2)
    for i in range(5):
        sink.write(f"line {i} with a payload\n".encode())
    sink.close()
    appended = tmp_path / "a.log"
    with open(appended, "ab") as writer:
        os.fchmod(writer.fileno(), 0o600)
        writer.write(b"x" * 100 + b"\n")
    assert rotate_copytruncate(appended, max_bytes=10, backups=1)
    files = [*rotated_files(tmp_path / "r.log"), *rotated_files(appended)]
    assert len(files) == 5
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in files} == {
        path.name: 0o600 for path in files
    }


def test_redact_any_depth_case_insensitive_without_changing_the_input():
    body: dict[str, Any] = {
        "instances": [{"SSN": "1", "x": 2}],
        "token": "t",
        "nested": {"deep": {"Token": 3}},
    }
    out = redact(body, frozenset({"ssn", "token"}))
    assert out == {
        "instances": [{"SSN": "[REDACTED]", "x": 2}],
        "token": "[REDACTED]",
        "nested": {"deep": {"Token": "[REDACTED]"}},
    }
    assert body["instances"][0]["SSN"] == "1"  # the input is not changed


def payload_log(stream: io.BytesIO, **spec: Any) -> tuple[AccessLog, PayloadLog | None]:
    access = AccessLog(stream, context={"deployment": "iris", "replica": "r0"})
    requests = RequestLoggingSpec(payloads=True, **spec)
    log = PayloadLog.from_spec(requests, access)
    return access, log


def test_payloads_are_off_by_default():
    access = AccessLog(io.BytesIO(), context={})
    assert PayloadLog.from_spec(RequestLoggingSpec(), access) is None
    assert (
        PayloadLog.from_spec(RequestLoggingSpec(payloads=True, payload_sample_rate=0), access)
        is None
    )


def test_payload_lines_are_redacted_json_joined_by_request_id():
    stream = io.BytesIO()
    access, log = payload_log(stream, payload_sample_rate=1.0, redact_fields=("email",))
    assert log is not None and log.wants()
    log.write(
        epoch_s=0.0,
        request_id="abc",
        path="/v2/models/iris/infer",
        status=200,
        request_body=b'{"inputs": [{"email": "a@b.c", "data": [1]}]}',
        response_body=b'{"outputs": []}',
    )
    access.flush()
    line = json.loads(stream.getvalue())
    assert line["msg"] == "payload" and line["request_id"] == "abc"
    assert line["deployment"] == "iris"
    assert line["request"] == {"inputs": [{"email": "[REDACTED]", "data": [1]}]}
    assert line["response"] == {"outputs": []}


def test_long_and_non_json_bodies_are_cut_after_redaction():
    _, log = payload_log(
        io.BytesIO(), payload_sample_rate=1.0, redact_fields=("secret",), max_payload_bytes=64
    )
    assert log is not None
    big = json.dumps({"secret": "s" * 200, "x": list(range(50))}).encode()
    fields = log.body_fields("request", big)
    assert fields["request_truncated"] is True
    assert "sss" not in fields["request"] and len(fields["request"]) <= 64
    assert log.body_fields("response", b"") == {"response": None}
    _, plain = payload_log(io.BytesIO(), payload_sample_rate=1.0, max_payload_bytes=64)
    assert plain is not None  # nothing to redact: a body that is not JSON is logged as text
    assert plain.body_fields("response", b"plain text") == {"response": "plain text"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"secret": "hunter2", "x": [1, 2',  # JSON cut short
        b"secret=hunter2&x=1",  # a form
        b'{"Secret": "hunter2"} trailing',
    ],
    ids=["cut-json", "form", "trailing-bytes"],
)
def test_a_body_that_does_not_parse_is_dropped_when_fields_are_redacted(body):
    _, log = payload_log(io.BytesIO(), payload_sample_rate=1.0, redact_fields=("secret",))
    assert log is not None
    fields = log.body_fields("request", body)
    assert fields == {"request": "[REDACTED]", "request_unparsed_bytes": len(body)}
    assert "hunter2" not in json.dumps(fields)


def test_payload_sampling_rate_is_respected():
    access = AccessLog(io.BytesIO(), context={})
    log = PayloadLog(access, sample_rate=0.1, rng=random.Random(7))  # noqa: S311 - sampling
    hits = sum(log.wants() for _ in range(10_000))
    assert 850 < hits < 1150


def test_json_formatter_writes_the_documented_schema():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter({"deployment": "iris", "revision": "2", "replica": "r0"}))
    logger = logging.getLogger("mlkube.test.schema")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("model %s slow", "iris", extra={"request_id": "r-1", "trace_id": "t"})
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert {
        "ts",
        "level",
        "msg",
        "logger",
        "deployment",
        "revision",
        "replica",
        "request_id",
        "trace_id",
    } <= set(line)
    assert line["msg"] == "model iris slow" and line["level"] == "warning"
    assert line["ts"].endswith("Z") and len(line["ts"]) == 24
