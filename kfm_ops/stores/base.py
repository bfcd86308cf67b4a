"""What every store room shares: the section it was opened from, where it is, and its error boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar, Generic, TypeVar

from kfm_ops.errors import KfmError
from kfm_ops.faults import translate
from kfm_ops.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


class Store(Generic[S]):
    """A client of one service, read-only unless opened with ``write=True``.

    Subclasses open their driver in ``__init__`` and translate its exceptions at their
    boundary (a transport, a cursor, a method) with :meth:`errors`, so callers only ever
    see :class:`~kfm_ops.errors.KfmError`.
    """

    service: ClassVar[str]
    """The service name (settings section, marker, registry key)."""
    label: ClassVar[str]
    """The service as messages name it (``opensearch``, ``neo4j`` …)."""

    def __init__(self, section: S, *, write: bool = False) -> None:
        self.section = section
        self.write = write

    @property
    def address(self) -> str:
        """``host:port`` of the service (never user-info)."""
        return self.section.where

    def where(self, thing: str = "") -> str:
        """``<label> host:port <thing>``: the place a message names."""
        return f"{self.label} {self.address}" + (f" {thing}" if thing else "")

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Driver exceptions inside the block leave it as :class:`~kfm_ops.errors.ServiceError`."""
        try:
            yield
        except KfmError:
            raise
        except Exception as exc:
            raise translate(exc, self.service, self.address) from exc

    def ping(self) -> None:
        """One cheap round trip; raises ServiceError when the service does not answer."""
        raise NotImplementedError

    def version(self) -> str:
        """The server's version, for report headers."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (best effort)."""
        raise NotImplementedError
