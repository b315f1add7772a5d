"""Resolution of asyncio futures, called on the event loop's own thread."""

from __future__ import annotations

import asyncio
from typing import Any, Optional


def _resolve(future: "asyncio.Future[Any]", value: Any, error: Optional[BaseException]) -> None:
    # The awaiting task may have been cancelled meanwhile: its future is then done.
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
