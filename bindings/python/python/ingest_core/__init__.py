"""ingest_core: validate, buffer and deliver e-commerce events to Kafka, in-process.

The Python package of the ingest-core Rust library: the same validation, disk buffer,
acknowledgement levels and delivery guarantees, behind :class:`Client`; and the edge
agent's feature-flag assignment, :class:`Flags`.
"""

from __future__ import annotations

import atexit as _atexit
import logging as _logging

from ._errors import (
    ClosedError,
    ConfigError,
    DeliveryError,
    DiskBufferError,
    IngestError,
    IngestIOError,
    IngestTimeoutError,
    KafkaError,
    QueueFullError,
    ValidationError,
)
from ._native import (
    ACKS,
    EVENT_KINDS,
    BatchResult,
    Client,
    Flags,
    Rejection,
    __version__,
    _before_exit,
    refresh_log_level,
)

# Library convention: records go nowhere until the application configures logging.
_logging.getLogger("ingest_core").addHandler(_logging.NullHandler())
# The native threads that call into Python (log records, asyncio completions) stop
# doing so before the interpreter shuts down.
_atexit.register(_before_exit)

__all__ = [
    "ACKS",
    "EVENT_KINDS",
    "BatchResult",
    "Client",
    "ClosedError",
    "ConfigError",
    "DeliveryError",
    "DiskBufferError",
    "Flags",
    "IngestError",
    "IngestIOError",
    "IngestTimeoutError",
    "KafkaError",
    "QueueFullError",
    "Rejection",
    "ValidationError",
    "__version__",
    "refresh_log_level",
]
