"""Open Policy Agent: serves the repo's policy bundle (``--watch``: Rego edits reload live)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from devstack.binaries import locate
from devstack.config import REPO
from devstack.errors import ProbeError, StackError
from devstack.net import http
from devstack.pins import OPA_VERSION
from devstack.sensitive import redact
from devstack.services.base import Service
from devstack.tls import TlsFiles, client_context, ensure_certs, tls_dir


class OPA(Service):
    name = "opa"
    title = "Open Policy Agent"
    pinned = OPA_VERSION.lstrip("v")
    port_keys = ("DEVSTACK_OPA_PORT",)
    tls_port_keys = ("DEVSTACK_OPA_TLS_PORT",)
    steps = ("go-opa", "apt-openssl")
    timeout = 30.0
    stop_timeout = 10.0

    def bundle(self) -> Path:
        raw = self.st.cfg.get("DEVSTACK_OPA_BUNDLE") or "kfm_ops/contracts/policy"
        p = Path(raw).expanduser()
        return p if p.is_absolute() else (REPO / p)

    def validate(self) -> None:
        b = self.bundle()
        if not b.is_dir():
            raise StackError(f"opa: the policy bundle directory {b} does not exist (set DEVSTACK_OPA_BUNDLE "
                             f"to another bundle directory). Log file: {self.log}")

    def prepare(self) -> None:
        ensure_certs(self.st)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        self.dir.mkdir(parents=True, exist_ok=True)
        files = TlsFiles(tls_dir(self.st))
        tls_port = self.st.port("DEVSTACK_OPA_TLS_PORT")
        # one server, two listeners: plaintext, and TLS that requires a client certificate from the stack's CA
        # (--authentication=tls; no authorization policy, as on the plaintext listener)
        argv = [str(locate("opa", self.st.bin)), "run", "--server", "--addr", f"http://127.0.0.1:{self.port}",
                "--addr", f"https://127.0.0.1:{tls_port}", "--tls-cert-file", str(files.server_cert),
                "--tls-private-key-file", str(files.server_key), "--tls-ca-cert-file", str(files.ca),
                "--authentication=tls", "--min-tls-version=1.2",
                "--bundle", str(self.bundle()), "--watch", "--log-level", "info", "--disable-telemetry"]
        return argv, self.base_env(HOME=str(self.dir)), self.dir

    def probe(self) -> str:
        code, body = http(f"http://127.0.0.1:{self.port}/health?bundles=true")
        if code != 200:
            shown = redact(body.decode("utf-8", "replace"), self.st.cfg)[:200]  # masked before it is cut
            raise ProbeError(f"GET /health?bundles=true answered HTTP {code}: {shown!r}")
        tls_port = self.st.port("DEVSTACK_OPA_TLS_PORT")
        try:
            code, body = http(f"https://127.0.0.1:{tls_port}/health?bundles=true",
                              context=client_context(TlsFiles(tls_dir(self.st))))
        except OSError as e:
            raise ProbeError(f"TLS port {tls_port}: {e}") from None
        if code != 200:
            shown = redact(body.decode("utf-8", "replace"), self.st.cfg)[:200]
            raise ProbeError(f"GET https://…:{tls_port}/health?bundles=true answered HTTP {code}: {shown!r}")
        return self.version_hint()

    def version_hint(self) -> str:
        stamp = self.st.stamps / "opa-version"
        if stamp.is_file():
            return stamp.read_text().strip()
        try:
            out = subprocess.run([str(locate("opa", self.st.bin)), "version"], capture_output=True, text=True,
                                 timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return self.pinned
        for line in out.splitlines():
            if line.startswith("Version:"):
                v = line.split(":", 1)[1].strip()
                with contextlib.suppress(OSError):
                    stamp.write_text(v)
                return v
        return self.pinned
