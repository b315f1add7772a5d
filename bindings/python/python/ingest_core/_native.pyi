import asyncio
import os
from typing import Any, Dict, List, Mapping, Optional, Union

from . import _types

__version__: str
EVENT_KINDS: List[str]
ACKS: List[str]

_Payload = Union[bytes, bytearray, memoryview]

class Rejection:
    """One event of a batch that failed validation."""

    @property
    def index(self) -> int: ...
    @property
    def code(self) -> int: ...
    @property
    def code_name(self) -> str: ...
    @property
    def field(self) -> Optional[str]: ...
    @property
    def message(self) -> str: ...

class BatchResult:
    """The outcome of submit_batch: valid events are queued even when others are not."""

    @property
    def accepted(self) -> int: ...
    @property
    def event_ids(self) -> List[str]: ...
    @property
    def rejections(self) -> List[Rejection]: ...

class Client:
    """A client of ingest-core. Thread-safe; a context manager that closes on exit."""

    def __init__(
        self,
        brokers: Optional[str] = None,
        buffer_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
        *,
        config: Optional[Union[str, Mapping[str, Any]]] = None,
        **options: Any,
    ) -> None: ...
    def submit(
        self,
        kind: _types.EventKind,
        payload: _Payload,
        ack: _types.AckLevel = "accepted",
        timeout: Optional[float] = None,
    ) -> str: ...
    def submit_batch(
        self,
        payload: _Payload,
        ack: _types.AckLevel = "accepted",
        timeout: Optional[float] = None,
    ) -> BatchResult: ...
    def submit_async(
        self,
        kind: _types.EventKind,
        payload: _Payload,
        ack: _types.AckLevel = "delivered",
        timeout: Optional[float] = None,
    ) -> "asyncio.Future[str]": ...
    def submit_batch_async(
        self,
        payload: _Payload,
        ack: _types.AckLevel = "delivered",
        timeout: Optional[float] = None,
    ) -> "asyncio.Future[BatchResult]": ...
    def flush(self, timeout: Optional[float] = None) -> None: ...
    def flush_async(self, timeout: Optional[float] = None) -> "asyncio.Future[None]": ...
    def close(self, timeout: Optional[float] = 30.0) -> _types.ShutdownReport: ...
    @property
    def closed(self) -> bool: ...
    def health(self) -> _types.Health: ...
    def stats(self) -> _types.Stats: ...
    def __enter__(self) -> "Client": ...
    def __exit__(self, *exc: object) -> bool: ...

class Flags:
    """A checked set of feature flags, assigning users as the edge agent does. Immutable
    and thread-safe. Bad flags raise ConfigError (``key``: ``flags[0].variants``)."""

    @staticmethod
    def from_toml(text: str) -> "Flags": ...
    @staticmethod
    def from_json(text: str) -> "Flags": ...
    @staticmethod
    def from_file(path: Union[str, "os.PathLike[str]"]) -> "Flags": ...
    def assign(self, user: str) -> Dict[str, str]: ...
    def variant(self, flag: str, user: str) -> Optional[str]: ...
    def __len__(self) -> int: ...

def refresh_log_level() -> None: ...
def _before_exit() -> None: ...
