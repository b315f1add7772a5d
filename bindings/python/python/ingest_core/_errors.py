"""The exceptions of ingest_core. The native module raises these classes."""

from __future__ import annotations

from typing import Any, Optional


class IngestError(Exception):
    """Base class of every error ingest_core raises.

    ``kind`` names the class of failure (``invalid``, ``queue_full``, ``shutting_down``,
    ``config``, ``kafka``, ``delivery``, ``io``, ``buffer``, ``timeout``), the same names
    and fixed numbers (``kind_number``) as ingest-core's ``ErrorKind``; ``message`` is the
    human-readable text.
    """

    kind: str = "unknown"
    kind_number: int = 0

    def __init__(self, message: str, /, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        for name, value in details.items():
            setattr(self, name, value)


class ValidationError(IngestError, ValueError):
    """The event (or the batch body as a whole) failed validation.

    ``code`` is the validation code's fixed number, ``code_name`` its name
    (``missing_field``, ``invalid_currency``, ...), ``field`` the path of the field at
    fault (``items[2].price``) or None, ``message`` what is wrong.
    """

    code: int
    code_name: str
    field: Optional[str]
    event_type: Optional[str]


class QueueFullError(IngestError):
    """Back-pressure: the in-memory queue is at its bound. Retry later."""


class ClosedError(IngestError):
    """The client is closed (or closing) and takes no more calls."""


class ConfigError(IngestError, ValueError):
    """The configuration is invalid; ``key`` names the configuration key.

    For a flags file (:class:`Flags`), ``key`` is where the fault is: ``flags[0].variants``,
    or ``flags file`` when the text does not parse (the message gives line and column).
    """

    key: str


class DeliveryError(IngestError):
    """Some events did not reach the acknowledgement level asked for.

    ``failed`` of ``total`` events failed; ``retryable`` says whether resubmitting may
    succeed.
    """

    failed: int
    total: int
    retryable: bool


class IngestTimeoutError(IngestError, TimeoutError):
    """A wait did not finish within its timeout (the events are still on their way)."""


class KafkaError(IngestError):
    """The Kafka client could not be created or an administrative request failed."""


class DiskBufferError(IngestError):
    """The disk buffer could not be opened or used (for example another process holds it)."""


class IngestIOError(IngestError, OSError):
    """A local resource (a thread, a file) could not be set up or used."""
