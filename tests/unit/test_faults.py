"""The one error map: driver exceptions, by type (never by their words), to fault classes."""

from __future__ import annotations

import ssl

import httpx
import neo4j.exceptions
import opensearchpy
import psycopg
import pytest
import redis.exceptions

from kfm_ops import faults
from kfm_ops.errors import ServiceError


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 — a driver wrapping the OS error as __context__, as drivers do
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(("exc", "fault"), [
    (ConnectionRefusedError(111, "Connection refused"), faults.REFUSED),
    (ConnectionResetError(104, "reset"), faults.RESET),
    (BrokenPipeError(32, "pipe"), faults.CLOSED),
    (TimeoutError("timed out"), faults.TIMEOUT),
    (ssl.SSLCertVerificationError("certificate verify failed"), faults.CERTIFICATE),
    (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), faults.TIMEOUT),
    (psycopg.errors.ConnectionTimeout("connection timeout expired"), faults.TIMEOUT),
    (psycopg.OperationalError("connection failed: ... password authentication failed"), faults.FAILED),
    (psycopg.errors.InsufficientPrivilege("permission denied"), faults.PERMISSION),
    # a hot standby's replay cancelling a read: 40001, before the OperationalError it derives from
    (psycopg.errors.SerializationFailure("canceling statement due to conflict with recovery"), faults.CONFLICT),
    (psycopg.errors.UndefinedTable("no such relation"), faults.SERVER),
    (neo4j.exceptions.AuthError("unauthorized"), faults.AUTH),
    (neo4j.exceptions.SessionExpired("gone"), faults.CLOSED),
    (redis.exceptions.AuthenticationError("invalid username-password pair"), faults.AUTH),
    (redis.exceptions.NoPermissionError("NOPERM"), faults.PERMISSION),
    (redis.exceptions.TimeoutError("Timeout reading from socket"), faults.TIMEOUT),
    (redis.exceptions.ConnectionError("Connection closed by server."), faults.FAILED),
    (httpx.ReadTimeout("timed out"), faults.TIMEOUT),
    (httpx.RemoteProtocolError("peer closed connection"), faults.CLOSED),
    (opensearchpy.ConnectionTimeout("TIMEOUT", "no answer", None), faults.TIMEOUT),
    (opensearchpy.TransportError(429, "es_rejected_execution_exception", {}), faults.THROTTLED),
    (opensearchpy.NotFoundError(404, "index_not_found_exception", {}), faults.NOT_FOUND),
    (opensearchpy.RequestError(400, "script refused", {}), faults.BAD_REQUEST),
    (opensearchpy.TransportError(503, "unavailable", {}), faults.SERVER),
    (ValueError("a bug, not a service"), faults.SERVER),
])
def test_each_driver_type_has_its_fault(exc: BaseException, fault: str) -> None:
    assert faults.fault_class(exc) == fault


def test_the_os_error_in_the_chain_wins_over_the_wrapper() -> None:
    wrapped = _chained(redis.exceptions.ConnectionError("Error 111 connecting"), ConnectionRefusedError(111, "x"))
    assert faults.fault_class(wrapped) == faults.REFUSED
    wrapped = _chained(neo4j.exceptions.ServiceUnavailable("Couldn't connect"), ConnectionResetError(104, "x"))
    assert faults.fault_class(wrapped) == faults.RESET


def test_words_do_not_decide_the_fault() -> None:
    """A message that mentions a password, or says 'closed', is not classed by those words."""
    assert faults.fault_class(ValueError("password closed refused timeout")) == faults.SERVER
    assert faults.fault_class(redis.exceptions.ResponseError("wrong password")) == faults.SERVER


def test_neo4j_status_codes_are_read() -> None:
    def server_error(code: str) -> BaseException:
        return neo4j.exceptions.Neo4jError._hydrate_neo4j(code=code, message="from the server")

    assert faults.fault_class(server_error("Neo.ClientError.Statement.AccessMode")) == faults.PERMISSION
    timed_out = server_error("Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration")
    assert faults.fault_class(timed_out) == faults.TIMEOUT
    assert faults.fault_class(server_error("Neo.ClientError.Statement.SyntaxError")) == faults.SERVER


def test_translate_names_service_place_and_fault() -> None:
    error = faults.translate(_chained(httpx.ConnectError("[Errno 111]"), ConnectionRefusedError(111, "x")),
                             "policy", "127.0.0.1:8181")
    assert isinstance(error, ServiceError)
    assert (error.service, error.where, error.fault) == ("policy", "127.0.0.1:8181", faults.REFUSED)
    assert str(error).startswith("policy unreachable at 127.0.0.1:8181: connection refused (ConnectError")
    assert error.exit_code == 4
    answered = faults.translate(opensearchpy.TransportError(500, "boom", {}), "search", "h:9200")
    assert answered.status == 500 and answered.message.startswith("search failed at h:9200: server error")
    assert faults.translate(error, "other", "x") is error


@pytest.mark.parametrize(("status", "fault"), [(401, faults.AUTH), (403, faults.PERMISSION), (404, faults.NOT_FOUND),
                                               (408, faults.TIMEOUT), (504, faults.TIMEOUT), (429, faults.THROTTLED),
                                               (422, faults.BAD_REQUEST), (502, faults.SERVER)])
def test_http_status_faults(status: int, fault: str) -> None:
    assert faults.status_fault(status) == fault


def test_a_detail_is_redacted_before_it_is_cut() -> None:
    """A registered secret that straddles the cut must not leave its first half behind."""
    from kfm_ops.redact import register_secret

    secret = "straddling-canary-0123456789abcdef"
    register_secret(secret)
    error = faults.translate(RuntimeError("x" * 180 + secret), "postgis", "127.0.0.1:5432")
    assert secret[:12] not in str(error)
    assert secret[:12] not in faults.detail(RuntimeError("y" * 190 + secret))


def test_a_url_password_in_a_long_detail_does_not_leak_its_tail() -> None:
    message = "z" * 150 + " postgresql://u:p@ss-canary-tail@db:5432/k"
    error = faults.translate(RuntimeError(message), "postgis", "db:5432")
    assert "canary-tail" not in str(error) and "ss-canary" not in str(error)
