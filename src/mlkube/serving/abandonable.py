"""Calls a replica may abandon when it stops: each in a daemon thread, awaited on the loop.

Loading a model (a download, the library's import, the load, the warm-up) runs off the event
loop. In the loop's default executor it would hold the process at exit: ``asyncio.run`` waits
for that executor's threads, and the interpreter joins them too, so a replica stopped while
loading (``mlkube down``, a scale-down, a rollout, Ctrl-C) lived on until the load ended,
minutes for a large model. Nobody waits for a daemon thread: stopping abandons the call, and
its result, which no one would read, is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def call_abandonable(name: str, func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a new daemon thread named ``name``; its result or its exception."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the awaiting task was cancelled: nobody wants the result
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result: T | None = func(*args)
            error: BaseException | None = None
        except BaseException as failure:  # handed to the awaiting task, which re-raises it
            result, error = None, failure
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: it stopped
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future
