"""Transport security: in staging and production, every configured service is reached over verified TLS.

What each connection is comes from the settings (:mod:`kfm_ops.transport`): plaintext, TLS without
verifying the server, or TLS with the server's certificate verified. In ``dev`` all are allowed; in
``staging`` and ``production`` only the last, unless the service's
``KFM_<SERVICE>__ALLOW_INSECURE_TRANSPORT=true`` (an opt-out the report header shows). A service
configured for verified TLS is then reached, so a certificate that does not verify fails here too.
See docs/security.md, "Transport security".
"""

from __future__ import annotations

import pytest

from kfm_ops import transport
from kfm_ops.errors import NotConfigured
from kfm_ops.hub import ServiceHub
from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.settings import SERVICES, Settings
from kfm_ops.stores import store_class

PER_SERVICE = [pytest.param(name, marks=getattr(pytest.mark, name), id=name) for name in SERVICES]


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.parametrize("service", PER_SERVICE)
def test_transport_is_encrypted_and_verified(service: str, kfm_settings: Settings, kfm_hub: ServiceHub) -> None:
    """In staging and production, each configured service is reached over TLS with its certificate verified."""
    section = kfm_settings.section(service)
    if section is None:
        problem = str(NotConfigured(service))
        if not kfm_settings.require_all_services:
            pytest.skip(problem)
        pytest.fail(problem + " and --kfm-require-all is set", pytrace=False)
    where = f"{store_class(service).label} {section.where}"
    insecure = [t for t in transport.transports(service, section) if not t.secure]
    refused = [t for t in insecure if transport.enforced(kfm_settings) and not t.allowed]
    expect(not refused, f"{service} is reached over an insecure transport in {transport.environment(kfm_settings)}: "
           + "; ".join(t.how for t in refused), where, [t.setting for t in refused],
           hint=f"use TLS with the server's certificate verified: {transport.REMEDY[service]} (docs/security.md); "
           f"or accept the risk with KFM_{service.upper()}__ALLOW_INSECURE_TRANSPORT=true")
    if insecure:
        return  # allowed: dev, or the service's logged opt-out
    store = kfm_hub.client(service)  # the TLS handshake: a certificate that does not verify fails the check here
    if service == "postgis":
        encrypted = kfm_hub.postgis().scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        expect(encrypted, "the server reports this session as not encrypted (pg_stat_ssl)", store.where(),
               hint="check the DSN's sslmode and the server's ssl setting")
