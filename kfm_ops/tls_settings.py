"""The transport-security part of every service section: CA file, client certificate, the opt-out.

``KFM_<SERVICE>__CA_FILE`` (the CAs that may sign the server's certificate; the system's when
unset), ``__CLIENT_CERT`` / ``__CLIENT_KEY`` (a client certificate, both or neither) and
``__ALLOW_INSECURE_TRANSPORT`` (outside dev: accept plaintext or unverified TLS for this service,
logged at every run). Validated when the settings load; a section-wide rule names its variables as
``{var}__NAME`` (the settings' error text fills in ``KFM_<SERVICE>``), never their values.
What each store does with them, and the rule: :mod:`kfm_ops.transport`, docs/security.md.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, field_validator, model_validator

from kfm_ops.paths import anchored


def plaintext_scheme(url: str, plaintext: tuple[str, ...], tls: str) -> str:
    scheme = urlsplit(url).scheme
    return f"{{var}}__URL is plaintext ({scheme}://; use {tls})" if scheme in plaintext else ""


def dsn_sslmode(dsn: str) -> str | None:
    """The ``sslmode`` a PostgreSQL URL sets in its query, if it sets one."""
    modes = parse_qs(urlsplit(dsn).query).get("sslmode")
    return modes[-1] if modes else None


class TlsSettings(BaseModel):
    """The TLS files and the opt-out of one service section (a base of ``ServiceSettings``)."""

    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    allow_insecure_transport: bool = False

    @field_validator("ca_file", "client_cert", "client_key", mode="before")
    @classmethod
    def _not_empty(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.strip():
            raise ValueError("is empty; name a PEM file, or leave the variable unset")
        return v

    @field_validator("ca_file", "client_cert", "client_key")
    @classmethod
    def _readable(cls, v: Path | None) -> Path | None:
        if v is None:
            return None
        path = anchored(v)
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ValueError("the file does not exist or is not readable")
        return path

    @model_validator(mode="after")
    def _tls_files(self) -> Self:
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("{var}__CLIENT_CERT and {var}__CLIENT_KEY go together: set both or neither")
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (ssl.SSLError, ValueError):
            raise ValueError("{var}__CA_FILE does not hold a PEM CA certificate") from None
        if self.client_cert and self.client_key:
            try:
                context.load_cert_chain(str(self.client_cert), str(self.client_key))
            except (ssl.SSLError, ValueError):
                # never the key's path or content in the message
                raise ValueError("{var}__CLIENT_CERT and {var}__CLIENT_KEY do not load as a PEM certificate "
                                 "and its private key (unencrypted, matching)") from None
        if (self.ca_file or self.client_cert) and (plain := self.plaintext_url()):
            raise ValueError(f"{{var}}__CA_FILE / __CLIENT_CERT are set but {plain}: TLS settings need a TLS "
                             "transport (see docs/security.md)")
        return self

    def plaintext_url(self) -> str:
        """What says this section is plaintext although TLS files are set ('' when nothing does)."""
        return ""
