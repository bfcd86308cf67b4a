"""The stack's own certificate authority: a CA, a server and a client certificate, made with the openssl CLI.

Python's standard library can verify certificates but cannot sign them, so devstack runs Debian's
``openssl``. Everything lives in ``$DEVSTACK_HOME/tls/`` (mode 0700), every file mode 0600, created
under umask 077 (no moment with a wider mode):

==============  =========================================================================
``ca.crt``      the CA certificate: what clients trust (``KFM_<SERVICE>__CA_FILE``)
``ca.key``      the CA's private key (only ever used here, to sign the two below)
``server.*``    the servers' certificate and key: CN localhost, SAN ``IP:127.0.0.1, DNS:localhost``
``client.*``    the harness's client certificate and key (``__CLIENT_CERT`` / ``__CLIENT_KEY``)
==============  =========================================================================

They are made once per state directory (``reset`` starts over) and again when one would expire
within :data:`RENEW_BEFORE_DAYS`. :func:`make_ca` and :func:`issue` also serve tests that need a
CA of their own (a wrong CA, a foreign client certificate).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.binaries import locate
from devstack.config import Stack
from devstack.errors import StackError

VALID_DAYS = 397
RENEW_BEFORE_DAYS = 7
KEY = "rsa:2048"
SERVER_SAN = "IP:127.0.0.1,DNS:localhost"
CLIENT_CN = "kfm-ops devstack client"


@dataclass(frozen=True)
class TlsFiles:
    """The generated files of one stack (or of one test's CA)."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.dir / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "client.key"


def tls_dir(st: Stack) -> Path:
    return st.state / "tls"


def openssl() -> str:
    found = locate("openssl", Path())
    if not os.access(found, os.X_OK):
        raise StackError(f"{found} is not installed (Debian package openssl): run `devstack/stack install`")
    return str(found)


def _run(argv: list[str], cwd: Path, log: Path | None) -> None:
    """One openssl command under umask 077; its output goes to ``log`` (it prints no secret: keys go to files)."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("ab")) if log else subprocess.DEVNULL
        res = subprocess.run([openssl(), *argv], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT if log else subprocess.PIPE, umask=0o077, timeout=60,
                             check=False)
    if res.returncode != 0:
        detail = f" Log file: {log}" if log else f" ({(res.stderr or b'').decode(errors='replace').strip()[-300:]})"
        raise StackError(f"tls: `openssl {argv[0]}` failed with exit status {res.returncode}.{detail}")


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _seal(files: TlsFiles) -> None:
    for p in files.dir.iterdir():
        if p.is_file():
            p.chmod(0o600)


def make_ca(directory: Path, name: str = "kfm devstack CA", *, log: Path | None = None) -> TlsFiles:
    """A new self-signed CA in ``directory`` (ca.crt, ca.key)."""
    _private_dir(directory)
    files = TlsFiles(directory)
    _run(["req", "-x509", "-newkey", KEY, "-nodes", "-keyout", files.ca_key.name, "-out", files.ca.name,
          "-days", str(VALID_DAYS + 1), "-subj", f"/CN={name}",
          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
          "-addext", "subjectKeyIdentifier=hash"], directory, log)
    _seal(files)
    return files


def issue(ca: TlsFiles, name: str, *, server: bool, cn: str = "", out: Path | None = None,
          log: Path | None = None) -> tuple[Path, Path]:
    """A certificate and key signed by ``ca``: ``<name>.crt`` / ``<name>.key`` in ``out`` (default: the CA's dir).

    ``server``: CN localhost with SAN ``IP:127.0.0.1, DNS:localhost`` for serverAuth; else a clientAuth
    certificate whose CN is ``cn`` (default ``name``).
    """
    target = out or ca.dir
    _private_dir(target)
    crt, key, csr, ext = (target / f"{name}{suffix}" for suffix in (".crt", ".key", ".csr", ".ext"))
    usage = (f"subjectAltName={SERVER_SAN}\nextendedKeyUsage=serverAuth\n" if server
             else "extendedKeyUsage=clientAuth\n")
    old = os.umask(0o077)
    try:
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" + usage)
    finally:
        os.umask(old)
    subject = "/CN=localhost" if server else f"/CN={cn or name}"
    try:
        _run(["req", "-new", "-newkey", KEY, "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", subject],
             target, log)
        _run(["x509", "-req", "-in", str(csr), "-CA", str(ca.ca), "-CAkey", str(ca.ca_key),
              "-set_serial", "0x" + secrets.token_hex(16), "-days", str(VALID_DAYS), "-sha256",
              "-extfile", str(ext), "-out", str(crt)], target, log)
    finally:
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)
    for p in (crt, key):
        p.chmod(0o600)
    return crt, key


def _fresh(cert: Path) -> bool:
    """Whether ``cert`` exists and stays valid for RENEW_BEFORE_DAYS more days."""
    if not cert.is_file():
        return False
    res = subprocess.run([openssl(), "x509", "-noout", "-checkend", str(RENEW_BEFORE_DAYS * 86400), "-in", str(cert)],
                         capture_output=True, timeout=30, check=False)
    return res.returncode == 0


def _signed_by(cert: Path, ca: Path) -> bool:
    res = subprocess.run([openssl(), "verify", "-CAfile", str(ca), str(cert)], capture_output=True, timeout=30,
                         check=False)
    return res.returncode == 0


def ensure_certs(st: Stack) -> TlsFiles:
    """The stack's CA, server and client certificates: made when missing, expiring or not from this CA."""
    files = TlsFiles(tls_dir(st))
    log = st.logs / "tls.log"
    st.logs.mkdir(parents=True, exist_ok=True)
    _private_dir(files.dir)
    if not (files.ca_key.is_file() and _fresh(files.ca)):
        make_ca(files.dir, log=log)
        for p in (files.server_cert, files.client_cert):
            p.unlink(missing_ok=True)
    for name, server in (("server", True), ("client", False)):
        crt = files.dir / f"{name}.crt"
        if not (_fresh(crt) and (files.dir / f"{name}.key").is_file() and _signed_by(crt, files.ca)):
            issue(files, name, server=server, cn=CLIENT_CN, log=log)
    _seal(files)
    return files


def install_copy(src: Path, dst: Path, *, uid: int = -1, gid: int = -1) -> None:
    """Copy ``src`` to ``dst`` as a 0600 file (owned by uid:gid when given), never wider at any moment."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(src.read_bytes())
        if uid >= 0:
            os.chown(tmp, uid, gid)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """What a client of the stack uses: trust the stack's CA (only), check the host name, present the client cert."""
    ctx = ssl.create_default_context(cafile=str(files.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.client_cert), str(files.client_key))
    return ctx


def handshake(port: int, files: TlsFiles, *, timeout: float = 3.0) -> ssl.SSLSocket:
    """A verified, mutually authenticated TLS connection to 127.0.0.1:``port`` (the caller closes it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return client_context(files).wrap_socket(sock, server_hostname="127.0.0.1")
    except BaseException:
        sock.close()
        raise
