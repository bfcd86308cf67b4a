"""The one error map: driver exceptions, by type, to fault classes and :class:`ServiceError`.

Every store calls :func:`translate` at its boundary (a transport, a cursor class, a
client method), so nothing past a store sees a driver exception. A fault is read from
the exception's chain (``__cause__`` / ``__context__``): the operating system's own
exception anywhere in the chain wins (a refused socket is "connection refused" whoever
wrapped it), then the drivers' types, outermost first. Types are matched by their
qualified names along the MRO, so no driver is imported here. HTTP answers are classed
by their status.

libpq reports every failed connection as one ``OperationalError``; the PostgreSQL store
opens a plain TCP connection first, so "refused" and "timeout" are still told by type.
"""

from __future__ import annotations

from kfm_ops.errors import ServiceError
from kfm_ops.redact import clip

REFUSED = "connection refused"
RESET = "connection reset"
CLOSED = "connection closed"
FAILED = "connection failed"
TIMEOUT = "timeout"
AUTH = "authentication failed"
CERTIFICATE = "certificate verify failed"
TLS = "tls error"
PERMISSION = "permission denied"
NOT_FOUND = "not found"
BAD_REQUEST = "bad request"
THROTTLED = "throttled"
SERVER = "server error"
CONFLICT = "conflict with recovery"  # a standby's replay cancelled the read (40001 on a hot standby)
REPLICA_BEHIND = "replica behind"  # a read replica that has not replayed far enough

UNREACHABLE = frozenset({REFUSED, RESET, CLOSED, FAILED, TIMEOUT, AUTH, CERTIFICATE, TLS})
"""Fault classes that mean "we could not talk to it" (as opposed to "it answered an error")."""

TRANSIENT = frozenset({RESET, CLOSED, FAILED})
"""Fault classes a warm-up retries (a peer restarting, a load balancer recycling a connection).

"connection failed" is in: it is what a driver says when the connection broke without an OS
error behind it — and libpq says it for every failed start-up, a reset as much as a refused
password (the PostgreSQL store can only tell "refused" and "timeout" by type), so a wrong
PostgreSQL password is tried three times before it is reported.
"""

OS_FAULTS: tuple[tuple[str, str], ...] = (
    ("builtins.ConnectionRefusedError", REFUSED),
    ("builtins.ConnectionResetError", RESET),
    ("builtins.BrokenPipeError", CLOSED),
    ("builtins.ConnectionAbortedError", CLOSED),
    ("builtins.TimeoutError", TIMEOUT),  # socket.timeout is TimeoutError
    ("ssl.SSLCertVerificationError", CERTIFICATE),
    ("ssl.SSLError", TLS),
)

DRIVER_FAULTS: tuple[tuple[str, str], ...] = (
    # psycopg (PostgreSQL)
    ("psycopg.errors.ConnectionTimeout", TIMEOUT),
    ("psycopg.errors.QueryCanceled", TIMEOUT),  # statement_timeout
    ("psycopg.errors.LockNotAvailable", TIMEOUT),  # lock_timeout
    ("psycopg.errors.InvalidPassword", AUTH),
    ("psycopg.errors.InvalidAuthorizationSpecification", AUTH),
    ("psycopg.errors.InsufficientPrivilege", PERMISSION),
    ("psycopg.errors.ReadOnlySqlTransaction", PERMISSION),
    # kfm-ops reads in REPEATABLE READ READ ONLY and writes in READ COMMITTED: neither meets a serialization
    # failure on a primary; on a hot standby it is replay cancelling the read (a recovery conflict)
    ("psycopg.errors.SerializationFailure", CONFLICT),
    ("psycopg.OperationalError", FAILED),  # libpq: the connection failed or broke
    ("psycopg.Error", SERVER),
    # neo4j
    ("neo4j.exceptions.AuthError", AUTH),
    ("neo4j.exceptions.Forbidden", PERMISSION),
    ("neo4j.exceptions.SessionExpired", CLOSED),
    ("neo4j.exceptions.ServiceUnavailable", FAILED),
    ("neo4j.exceptions.Neo4jError", SERVER),
    ("neo4j.exceptions.DriverError", FAILED),
    # redis
    ("redis.exceptions.AuthenticationError", AUTH),
    ("redis.exceptions.NoPermissionError", PERMISSION),
    ("redis.exceptions.TimeoutError", TIMEOUT),
    ("redis.exceptions.ConnectionError", FAILED),
    ("redis.exceptions.RedisError", SERVER),
    # httpx (OPA, the LLM runtime)
    ("httpx.TimeoutException", TIMEOUT),
    ("httpx.RemoteProtocolError", CLOSED),
    ("httpx.NetworkError", FAILED),
    ("httpx.HTTPError", SERVER),
    # opensearch-py and the urllib3 beneath it
    ("opensearchpy.exceptions.ConnectionTimeout", TIMEOUT),
    ("opensearchpy.exceptions.SSLError", TLS),
    ("opensearchpy.exceptions.ConnectionError", FAILED),
    ("urllib3.exceptions.TimeoutError", TIMEOUT),
    ("urllib3.exceptions.ProtocolError", CLOSED),
    ("http.client.IncompleteRead", CLOSED),
    ("http.client.RemoteDisconnected", CLOSED),
)

# Neo4j says what went wrong in a status code, not a type.
NEO4J_CODES = (("TransactionTimedOut", TIMEOUT), ("Security.Unauthorized", AUTH), ("Security.Forbidden", PERMISSION),
               ("AccessMode", PERMISSION))


def status_fault(status: int) -> str:
    """The fault class of an HTTP answer."""
    if status in (401, 407):
        return AUTH
    if status == 403:
        return PERMISSION
    if status == 404:
        return NOT_FOUND
    if status in (408, 504):
        return TIMEOUT
    if status == 429:
        return THROTTLED
    if 400 <= status < 500:
        return BAD_REQUEST
    return SERVER


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions behind it (cause, else context), outermost first."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found and len(found) < 12:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}


def _lookup(exc: BaseException, table: tuple[tuple[str, str], ...]) -> str | None:
    names = _names(exc)
    return next((fault for name, fault in table if name in names), None)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (opensearch-py TransportError, httpx HTTPStatusError)."""
    for cause in chain(exc):
        status = getattr(cause, "status_code", None)
        if isinstance(status, int):
            return status
        response = getattr(cause, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and "httpx" in type(cause).__module__:
            return status
    return None


def fault_class(exc: BaseException) -> str:
    """The fault behind ``exc``: the OS's exception in its chain, else an HTTP status, else the driver's type."""
    causes = chain(exc)
    for cause in causes:
        if fault := _lookup(cause, OS_FAULTS):
            return fault
    if (status := http_status(exc)) is not None:
        return status_fault(status)
    for cause in causes:
        code = getattr(cause, "code", None)
        if isinstance(code, str) and (fault := next((f for part, f in NEO4J_CODES if part in code), None)):
            return fault
        if fault := _lookup(cause, DRIVER_FAULTS):
            return fault
    return SERVER


def detail(exc: BaseException) -> str:
    """``Type: message`` of the outermost exception, on one line, redacted, at most ~200 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {clip(text, 200)}"


def translate(exc: BaseException, service: str, where: str) -> ServiceError:
    """The :class:`ServiceError` for a driver exception raised while talking to ``service``."""
    if isinstance(exc, ServiceError):
        return exc
    return ServiceError(service, where, fault_class(exc), detail(exc), status=http_status(exc))
