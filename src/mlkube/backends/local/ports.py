"""Loopback ports: pick a free one for a replica, check that a service port is free.

A port picked here is free when picked; a replica that loses the race to another process fails
to bind, exits, and is restarted on a fresh port by the controller.
"""

from __future__ import annotations

import contextlib
import socket

from mlkube.errors import BackendError

LOOPBACK = "127.0.0.1"


class PortInUseError(BackendError):
    """A port the user asked for is taken."""

    def __init__(self, port: int, what: str, detail: str) -> None:
        self.port = port
        super().__init__(
            f"cannot listen on {LOOPBACK}:{port} for {what}: the port is already in use "
            f"({detail}); choose another spec.service.port or stop what holds it"
        )


def free_port() -> int:
    """A port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def check_free(port: int, what: str) -> None:
    """Raise PortInUseError naming ``port`` when it cannot be bound on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as error:
            raise PortInUseError(port, what, error.strerror or str(error)) from error


def is_listening(port: int) -> bool:
    """True when something accepts connections on loopback ``port``."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0
