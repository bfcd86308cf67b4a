"""Transport security: how each configured service is reached, and the rule for staging and production.

Each store passes its section's TLS settings to its driver (:func:`ssl_context` for the drivers that
take one); this module says, from the settings alone and before anything connects, what every
connection will be: plaintext, TLS without verifying the server, or TLS with the server's
certificate verified (chain and host name). The rule (docs/security.md, "Transport security"):

- in ``dev`` every transport is allowed;
- in ``staging`` and ``production`` a plaintext or unverified transport is refused for actions
  (:func:`require_secure`, exit 3) and fails the smoke check
  ``opschecks/health/test_transport.py``, unless that service's
  ``KFM_<SERVICE>__ALLOW_INSECURE_TRANSPORT=true`` — an opt-out logged as a warning at every run and
  shown in the report header (:func:`waived`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kfm_ops import log
from kfm_ops.errors import ActionRefused
from kfm_ops.settings import (
    SERVICES,
    CacheSettings,
    GraphSettings,
    PostgisSettings,
    SearchSettings,
    ServiceSettings,
    Settings,
)
from kfm_ops.tls_settings import dsn_sslmode

FALSE_WORDS = ("0", "f", "false", "n", "no", "off")
REMEDY = {
    "postgis": "KFM_POSTGIS__CA_FILE (sslmode=verify-full follows), no weaker sslmode in the DSNs",
    "graph": "a bolt+s:// or neo4j+s:// KFM_GRAPH__URL (KFM_GRAPH__CA_FILE for a private CA)",
    "search": "an https:// KFM_SEARCH__URL, KFM_SEARCH__VERIFY_CERTS left on (KFM_SEARCH__CA_FILE for a private CA)",
    "cache": "a rediss:// KFM_CACHE__URL without ssl_cert_reqs=none/optional (KFM_CACHE__CA_FILE for a private CA)",
    "policy": "an https:// KFM_POLICY__URL (KFM_POLICY__CA_FILE for a private CA)",
    "llm": "an https:// KFM_LLM__URL (KFM_LLM__CA_FILE for a private CA)",
}
"""What makes each service's transport TLS with the server verified."""


@dataclass(frozen=True)
class Transport:
    """One connection a service section configures (PostgreSQL has two: the checks' and the actions')."""

    service: str
    encrypted: bool
    verified: bool
    how: str
    """What the connection is, for people: ``plaintext (http://)``, ``TLS, server not verified (…)``."""
    setting: str
    """The variable that makes it so (the one to change)."""
    allowed: bool
    """``KFM_<SERVICE>__ALLOW_INSECURE_TRANSPORT`` is set."""

    @property
    def secure(self) -> bool:
        return self.encrypted and self.verified

    @property
    def opt_out(self) -> str:
        return f"KFM_{self.service.upper()}__ALLOW_INSECURE_TRANSPORT"

    def __str__(self) -> str:
        return f"{self.service}: {self.how} ({self.setting})"


def _var(service: str, name: str) -> str:
    return f"KFM_{service.upper()}__{name.upper()}"


def _tls(service: str, section: ServiceSettings, setting: str, detail: str = "") -> Transport:
    ca = f"CA {_var(service, 'ca_file')}" if section.ca_file else "the system's CAs"
    client = f", client certificate {_var(service, 'client_cert')}" if section.client_cert else ""
    return Transport(service, True, True, f"TLS, server verified against {ca}{client}{detail}", setting,
                     section.allow_insecure_transport)


def _insecure(service: str, section: ServiceSettings, how: str, setting: str, *, encrypted: bool) -> Transport:
    return Transport(service, encrypted, False, how, setting, section.allow_insecure_transport)


def postgis_sslmode(section: PostgisSettings, dsn: str) -> str:
    """The sslmode libpq will use for ``dsn``: the DSN's, else verify-full when TLS files are set, else libpq's."""
    mode = dsn_sslmode(dsn)
    if mode:
        return mode
    if section.ca_file or section.client_cert:
        return "verify-full"
    return os.environ.get("PGSSLMODE") or "prefer"


def _postgis(section: PostgisSettings) -> list[Transport]:
    found = []
    labels = {"dsn": "the checks' connection", "write_dsn": "the actions' connection",
              "replica_dsn": "the replica reads"}
    for name, dsn in (("dsn", section.dsn), ("write_dsn", section.write_dsn), ("replica_dsn", section.replica_dsn)):
        if not dsn:
            continue
        setting = _var("postgis", name)
        mode = postgis_sslmode(section, dsn)
        label = labels[name]
        if mode == "verify-full":
            found.append(_tls("postgis", section, setting, f", sslmode=verify-full ({label})"))
        elif mode in ("require", "verify-ca"):
            what = "the host name is not checked" if mode == "verify-ca" else "the certificate is not checked"
            found.append(_insecure("postgis", section, f"TLS, server not verified: sslmode={mode}, {what} ({label})",
                                   setting, encrypted=True))
        else:
            fallback = "plaintext" if mode == "disable" else "may fall back to plaintext, server not verified"
            found.append(_insecure("postgis", section, f"sslmode={mode}: {fallback} ({label})", setting,
                                   encrypted=False))
    return found


def _graph(section: GraphSettings) -> list[Transport]:
    scheme = urlsplit(section.url).scheme
    if scheme.endswith("+s"):
        return [_tls("graph", section, _var("graph", "url"))]
    return [_insecure("graph", section, f"plaintext ({scheme}://)", _var("graph", "url"), encrypted=False)]


def _search(section: SearchSettings) -> list[Transport]:
    scheme = urlsplit(section.url).scheme
    if scheme != "https":
        return [_insecure("search", section, _plain_http(section), _var("search", "url"), encrypted=False)]
    if not section.verify_certs:
        return [_insecure("search", section, "TLS, server not verified (certificate verification is off)",
                          _var("search", "verify_certs"), encrypted=True)]
    return [_tls("search", section, _var("search", "url"))]


def _cache(section: CacheSettings) -> list[Transport]:
    parts = urlsplit(section.url)
    setting = _var("cache", "url")
    if parts.scheme != "rediss":
        return [_insecure("cache", section, f"plaintext ({parts.scheme}://)", setting, encrypted=False)]
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    if query.get("ssl_cert_reqs", "required") != "required":
        return [_insecure("cache", section, f"TLS, server not verified (ssl_cert_reqs={query['ssl_cert_reqs']})",
                          setting, encrypted=True)]
    if query.get("ssl_check_hostname", "true") in FALSE_WORDS:
        return [_insecure("cache", section, "TLS, host name not checked (ssl_check_hostname=false)", setting,
                          encrypted=True)]
    return [_tls("cache", section, setting)]


def _plain_http(section: Any) -> str:
    bearer = any(getattr(section, name, None) for name in ("token", "api_key", "password"))
    return "plaintext (http://)" + (", credentials sent in the clear" if bearer else "")


def _http(service: str, section: Any) -> list[Transport]:
    if urlsplit(section.url).scheme != "https":
        return [_insecure(service, section, _plain_http(section), _var(service, "url"), encrypted=False)]
    return [_tls(service, section, _var(service, "url"))]


def transports(service: str, section: ServiceSettings) -> list[Transport]:
    """The connections ``section`` configures for ``service``, classified."""
    if isinstance(section, PostgisSettings):
        return _postgis(section)
    if isinstance(section, GraphSettings):
        return _graph(section)
    if isinstance(section, SearchSettings):
        return _search(section)
    if isinstance(section, CacheSettings):
        return _cache(section)
    return _http(service, section)


def of(settings: Settings, services: Iterable[str] | None = None) -> list[Transport]:
    """Every configured connection of ``services`` (all by default)."""
    wanted = SERVICES if services is None else tuple(services)
    return [t for name in SERVICES if name in wanted and (section := settings.section(name))
            for t in transports(name, section)]


def enforced(settings: Settings) -> bool:
    """Whether the rule applies: everywhere but dev (staging, production, and an environment not named)."""
    return settings.environment != "dev"


def environment(settings: Settings) -> str:
    return settings.environment or "an environment not named (KFM_ENVIRONMENT unset)"


def refused(settings: Settings, services: Iterable[str] | None = None) -> list[Transport]:
    """The insecure connections the rule refuses (none in dev; an opted-out service is not refused)."""
    return [t for t in of(settings, services) if enforced(settings) and not t.secure and not t.allowed]


def waived(settings: Settings, services: Iterable[str] | None = None) -> list[Transport]:
    """Insecure connections allowed only by their service's opt-out (to log and show at every run)."""
    return [t for t in of(settings, services) if enforced(settings) and not t.secure and t.allowed]


def waiver_line(t: Transport) -> str:
    return f"insecure transport allowed by {t.opt_out}=true: {t}"


def log_waivers(settings: Settings, services: Iterable[str] | None = None) -> list[Transport]:
    """Log every opted-out insecure transport as a warning (each run does, at its start); returns them."""
    found = waived(settings, services)
    for t in found:
        log.get_logger().warning("transport.insecure_allowed", service=t.service, transport=t.how,
                                 setting=t.setting, opt_out=t.opt_out)
    return found


def require_secure(settings: Settings, services: Iterable[str]) -> None:
    """Refuse (:class:`ActionRefused`, exit 3) before anything connects when a transport breaks the rule."""
    bad = refused(settings, services)
    if bad:
        raise ActionRefused(
            f"insecure transport in {environment(settings)}: " + "; ".join(str(t) for t in bad),
            hint="use TLS with the server's certificate verified: "
            + "; ".join(REMEDY[s] for s in sorted({t.service for t in bad}))
            + " (docs/security.md); to accept the risk for a service, set "
            + ", ".join(sorted({f"{t.opt_out}=true" for t in bad})) + " (logged at every run)",
            services=",".join(sorted({t.service for t in bad})),
        )


def ssl_context(section: ServiceSettings) -> ssl.SSLContext:
    """A client context: the section's CA file (else the system's CAs), host name checked, its client certificate."""
    context = ssl.create_default_context(cafile=str(section.ca_file) if section.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if section.client_cert and section.client_key:
        context.load_cert_chain(str(section.client_cert), str(section.client_key))
    return context


def customised(section: ServiceSettings) -> bool:
    """Whether the section sets TLS files (else a driver keeps its own defaults)."""
    return bool(section.ca_file or section.client_cert)
