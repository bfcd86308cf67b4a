"""No secret on a command line or in a log: what devstack builds, and a throw-away stack for real.

``/proc/<pid>/cmdline`` is readable by every user of the machine, and logs get copied around
(CI artefacts). The servers take their passwords and keys from the environment, stdin or a
file created with mode 0600; devstack masks them in whatever it writes itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from devstack.commands import record_failure
from devstack.config import Stack, load_config
from devstack.net import http
from devstack.scram import saslprep, scram_sha256
from devstack.sensitive import MASK, redact, secret_values, write_private
from devstack.services.base import Service
from devstack.services.llm import LLM
from devstack.services.neo4j import Neo4j, picocli_arg_file
from devstack.services.postgis import BOOTSTRAP_VARS, PostGIS
from devstack.services.redis import resp_command
from tests.devstack.conftest import PORT_KEYS, REPO, run_stack

PSQL = "/usr/lib/postgresql/15/bin/psql"
SECRET_KEYS = ("DEVSTACK_PG_OWNER_PASSWORD", "DEVSTACK_PG_READER_PASSWORD", "DEVSTACK_NEO4J_PASSWORD",
               "DEVSTACK_REDIS_PASSWORD", "DEVSTACK_REDIS_READER_PASSWORD", "DEVSTACK_LLM_API_KEY")


def awkward_secrets() -> dict[str, str]:
    """Fresh, unique secrets, with characters that break naive quoting (and SASLprep's mapping)."""
    t = {key: secrets.token_hex(6) for key in SECRET_KEYS}
    return {
        "DEVSTACK_PG_OWNER_PASSWORD": f"pw-\u00e4-\ufb01-\uff21-{t['DEVSTACK_PG_OWNER_PASSWORD']}",  # NFKC maps two
        "DEVSTACK_PG_READER_PASSWORD": f"rd'er\\pw {t['DEVSTACK_PG_READER_PASSWORD']}",
        "DEVSTACK_NEO4J_PASSWORD": f'#n"eo\\ 4j {t["DEVSTACK_NEO4J_PASSWORD"]}',
        "DEVSTACK_REDIS_PASSWORD": f"cache-owner-{t['DEVSTACK_REDIS_PASSWORD']}",
        "DEVSTACK_REDIS_READER_PASSWORD": f"cache-reader-{t['DEVSTACK_REDIS_READER_PASSWORD']}",
        "DEVSTACK_LLM_API_KEY": f"llm-key-{t['DEVSTACK_LLM_API_KEY']}",
    }


def scratch_cfg(tmp_path: Path) -> dict[str, str]:
    return {**load_config(), "DEVSTACK_HOME": str(tmp_path / "home"), **awkward_secrets()}


def leaks(text: str, values: list[str]) -> list[str]:
    return [v for v in values if v in text]


# --------------------------------------------------------------------------- what devstack builds
def test_the_secret_values_are_the_passwords_and_keys(tmp_path: Path) -> None:
    cfg = scratch_cfg(tmp_path)
    assert set(secret_values(cfg)) == {cfg[k] for k in SECRET_KEYS}
    line = "starting x: --password " + " ".join(cfg[k] for k in SECRET_KEYS)
    masked = redact(line, cfg)
    assert not leaks(masked, secret_values(cfg)) and masked.count(MASK) == len(SECRET_KEYS)


def test_write_private_never_exists_with_a_wider_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "conf"
    target.write_text("old")
    target.chmod(0o644)
    seen: list[int] = []
    real_replace = os.replace

    def checking_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        seen.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", checking_replace)
    old = os.umask(0)  # even with a permissive umask
    try:
        write_private(target, "requirepass s3cret\n")
    finally:
        os.umask(old)
    assert seen == [0o600]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == "requirepass s3cret\n"
    assert [p.name for p in tmp_path.iterdir()] == ["conf"]


def test_llm_api_key_goes_through_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = scratch_cfg(tmp_path)
    llm = LLM(Stack(cfg))
    monkeypatch.setattr(llm, "model_path", lambda: tmp_path / "model.gguf")
    argv, env, _ = llm.command()
    assert not leaks(" ".join(argv), secret_values(cfg))
    assert "--api_key" not in argv
    assert env["API_KEY"] == cfg["DEVSTACK_LLM_API_KEY"]  # llama_cpp.server's ServerSettings.api_key


def test_llm_server_reads_its_api_key_from_the_environment() -> None:
    """The installed llama-cpp-python: a setting not given as an option comes from its env variable."""
    venv_python = Stack(load_config()).llm_venv / "bin" / "python"
    if not venv_python.exists():
        pytest.skip("the LLM venv is not installed (devstack/stack install)")
    code = ("import os, argparse\n"
            "from llama_cpp.server.settings import ServerSettings\n"
            "from llama_cpp.server.cli import add_args_from_model, parse_model_from_args\n"
            "p = argparse.ArgumentParser(); add_args_from_model(p, ServerSettings)\n"
            "print(parse_model_from_args(ServerSettings, p.parse_args(['--port', '1'])).api_key)\n")
    res = subprocess.run([str(venv_python), "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PATH": os.environ.get("PATH", ""), "API_KEY": "from-the-env"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "from-the-env"


def test_postgis_bootstrap_sends_verifiers_on_stdin(tmp_path: Path) -> None:
    cfg = scratch_cfg(tmp_path)
    pg = PostGIS(Stack(cfg))
    argv = pg.psql_super_argv()
    sql, env = pg.bootstrap_input()
    values = secret_values(cfg)
    assert not leaks(" ".join(argv), values) and "-v" in argv and not any("_pw=" in a for a in argv)
    assert not leaks(sql, values) and not leaks(" ".join(env.values()), values)
    for var, env_name in BOOTSTRAP_VARS:
        assert f"\\getenv {var} {env_name}\n" in sql
        assert f":'{var}'" in sql or f':"{var}"' in sql  # bootstrap.sql uses every variable
    for var in ("DEVSTACK_PG_OWNER_SCRAM", "DEVSTACK_PG_READER_SCRAM"):
        assert env[var].startswith("SCRAM-SHA-256$4096:")


def test_scram_verifier_matches_rfc7677() -> None:
    """RFC 7677's example exchange (user/pencil) verifies against the keys devstack computes."""
    verifier = scram_sha256("pencil", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    stored, server = (base64.b64decode(k) for k in verifier.rsplit("$", 1)[1].split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}".encode()
    server_signature = base64.b64encode(hmac.new(server, auth, "sha256").digest())
    assert server_signature == b"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_key = bytes(a ^ b for a, b in zip(proof, hmac.new(stored, auth, "sha256").digest(), strict=True))
    assert hashlib.sha256(client_key).digest() == stored


def test_saslprep_like_postgres() -> None:
    assert saslprep("plain ascii \\ ' \"") == "plain ascii \\ ' \""
    assert saslprep("\ufb01\uff21\u00a0x\u00ad") == "fiA x"  # NFKC, non-ASCII space -> space, soft hyphen dropped
    assert saslprep("bad\u0007\u00e9") == "bad\u0007\u00e9"  # prohibited (control): used as it is


def test_neo4j_initial_password_goes_through_an_argument_file(tmp_path: Path) -> None:
    cfg = scratch_cfg(tmp_path)
    neo = Neo4j(Stack(cfg))
    argv = neo.initial_password_argv(tmp_path / "pw.args")
    assert not leaks(" ".join(argv), secret_values(cfg)) and argv[-1] == f"@{tmp_path / 'pw.args'}"
    assert picocli_arg_file('#a "b" \\c') == '"#a \\"b\\" \\\\c"\n'


class Careless(Service):
    """A stand-in service whose command line (wrongly) carries a secret: devstack's log line masks it."""

    name = "careless"

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        c = self.st.cfg
        argv = ["/bin/true", "--password", c["DEVSTACK_NEO4J_PASSWORD"], f"--key={c['DEVSTACK_PG_READER_PASSWORD']}"]
        return argv, self.base_env(), self.st.state


def test_what_devstack_logs_is_masked(tmp_path: Path) -> None:
    cfg = scratch_cfg(tmp_path)
    svc = Careless(Stack(cfg))
    svc.st.state.mkdir(parents=True)
    svc.spawn().wait(timeout=30)
    msg = record_failure(svc, f"devstack: careless failed: psql said PASSWORD '{cfg['DEVSTACK_PG_OWNER_PASSWORD']}'")
    assert MASK in msg and not leaks(msg, secret_values(cfg))
    log = svc.log.read_text()
    assert f"starting careless: /bin/true --password '{MASK}' '--key={MASK}'\n" in log  # quoting cannot hide one
    assert not leaks(log, secret_values(cfg))


# --------------------------------------------------------------------------- a throw-away stack, for real
class CmdlineWatch(threading.Thread):
    """Reads every process's command line until stopped; remembers any that holds one of ``values``."""

    def __init__(self, values: list[str]) -> None:
        super().__init__(daemon=True)
        self.values = [v.encode() for v in values]
        self.hits: dict[int, str] = {}
        self.scans = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.scan()
            self.done.wait(0.03)

    def scan(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if any(v in cmdline for v in self.values):
                self.hits[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:300]
        self.scans += 1


STARTED = ["postgis", "redis", "opa", "llm", "neo4j"]
MAY_HOLD_A_SECRET = {"redis/redis.conf"}  # 0600, read by redis-server at start


@pytest.mark.devstack
@pytest.mark.slow
def test_no_secret_on_a_command_line_or_in_a_log(scratch_stack: dict[str, str]) -> None:
    given = awkward_secrets()
    env = {**scratch_stack, **given}
    home = Path(env["DEVSTACK_HOME"])
    values = list(given.values())
    watch = CmdlineWatch(values)
    watch.start()
    try:
        up = run_stack("up", *STARTED, env=env, timeout=900)
    finally:
        watch.done.set()
        watch.join()
    assert up.returncode == 0, up.stdout + up.stderr
    assert watch.scans > 10
    assert not watch.hits, f"a secret was on a command line while the stack started: {watch.hits}"

    rows = {r["name"]: r for r in json.loads(run_stack("status", "--json", env=env).stdout)}
    pids = [pid for name in STARTED for pid in rows[name]["pids"]]
    assert all(rows[name]["up"] for name in STARTED), rows  # the probes log in with every password
    assert pids
    watch.scan()
    assert not watch.hits, f"a server runs with a secret on its command line: {watch.hits}"

    reader = subprocess.run(
        [PSQL, "-X", "-At", "-h", "127.0.0.1", "-p", env["DEVSTACK_POSTGIS_PORT"], "-U", "kfm_reader", "-d", "kfm",
         "-c", "select current_user"], capture_output=True, text=True, timeout=30,
        env={"PATH": os.environ["PATH"], "PGPASSWORD": given["DEVSTACK_PG_READER_PASSWORD"]})
    assert reader.stdout.strip() == "kfm_reader", reader.stderr
    llm = f"http://127.0.0.1:{env['DEVSTACK_LLM_PORT']}/v1/models"
    assert http(llm, headers={"Authorization": "Bearer wrong"})[0] == 401, "the LLM must still require its key"
    assert http(llm, headers={"Authorization": f"Bearer {given['DEVSTACK_LLM_API_KEY']}"})[0] == 200
    with socket.create_connection(("127.0.0.1", int(env["DEVSTACK_REDIS_PORT"])), timeout=5) as r:
        assert resp_command(r, "AUTH", "kfm_reader", given["DEVSTACK_REDIS_READER_PASSWORD"]) == "OK"

    logs = sorted((home / "logs").glob("*.log"))
    assert {p.stem for p in logs} >= set(STARTED)
    for log in logs:
        text = log.read_bytes().decode("utf-8", "replace")
        assert not leaks(text, values), f"{log} holds a secret"

    holding = {}
    for path in home.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.relative_to(home).parts[0] in ("llm-venv", "lib", "bin"):
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if any(v.encode() in data for v in values):
            holding[str(path.relative_to(home))] = stat.S_IMODE(path.stat().st_mode)
    assert set(holding) <= MAY_HOLD_A_SECRET, f"unexpected files hold a secret: {holding}"
    assert all(mode == 0o600 for mode in holding.values()), holding
    assert stat.S_IMODE((home / "redis" / "redis.conf").stat().st_mode) == 0o600
    assert not list((home / "neo4j").rglob("*.args")), "the initial-password argument file must be gone"


def test_the_scratch_ports_are_not_the_shared_stack(scratch_stack: dict[str, str]) -> None:
    shared = {v for k, v in load_config().items() if k.endswith("_PORT")}
    mine = {v for k, v in scratch_stack.items() if k.endswith("_PORT")}
    assert len(mine) == len(PORT_KEYS) and not (mine & shared)
    assert Path(scratch_stack["DEVSTACK_HOME"]) != REPO / ".devstack"
