"""The LLM runtime: an OpenAI-compatible server or Ollama, behind one small interface."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from kfm_ops import transport
from kfm_ops.settings import LlmSettings
from kfm_ops.stores.base import Store


@dataclass(frozen=True)
class Completion:
    text: str
    seconds: float


class _OpenAI:
    """The OpenAI-compatible API (llama.cpp's server, vLLM, …)."""

    name = "openai"

    @staticmethod
    def models(http: httpx.Client) -> list[str]:
        response = http.get("/v1/models")
        response.raise_for_status()
        return sorted(m["id"] for m in response.json()["data"])

    @staticmethod
    def complete(http: httpx.Client, model: str, prompt: str, max_tokens: int) -> str:
        response = http.post("/v1/chat/completions", json={
            "model": model, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": prompt}],
        })
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"] or "")


class _Ollama:
    """Ollama's own API."""

    name = "ollama"

    @staticmethod
    def models(http: httpx.Client) -> list[str]:
        response = http.get("/api/tags")
        response.raise_for_status()
        return sorted(m["name"] for m in response.json()["models"])

    @staticmethod
    def complete(http: httpx.Client, model: str, prompt: str, max_tokens: int) -> str:
        response = http.post("/api/generate", json={
            "model": model, "prompt": prompt, "stream": False,
            "options": {"num_predict": max_tokens, "temperature": 0},
        })
        response.raise_for_status()
        return str(response.json().get("response", ""))


FLAVOURS: dict[str, Any] = {"openai": _OpenAI, "ollama": _Ollama}


class LlmStore(Store[LlmSettings]):
    """What the checks need of the runtime: list models, run a tiny completion."""

    service: ClassVar[str] = "llm"
    label: ClassVar[str] = "llm"

    def __init__(self, section: LlmSettings, *, write: bool = False) -> None:
        super().__init__(section, write=False)
        self.model = section.model
        self.flavour = section.flavour
        self._api = FLAVOURS[section.flavour]
        headers = {"Authorization": f"Bearer {section.api_key.get_secret_value()}"} if section.api_key else {}
        self.http = httpx.Client(base_url=section.url, headers=headers,
                                 timeout=httpx.Timeout(section.query_timeout, connect=section.connect_timeout),
                                 verify=transport.ssl_context(section) if transport.customised(section) else True)

    def where(self, thing: str = "") -> str:
        return f"{self.label} {self.address} ({self.flavour} API)" + (f" {thing}" if thing else "")

    def models(self) -> list[str]:
        with self.errors():
            return list(self._api.models(self.http))

    def complete(self, prompt: str, *, max_tokens: int = 8) -> Completion:
        started = time.monotonic()
        with self.errors():
            text = self._api.complete(self.http, self.model, prompt, max_tokens)
        return Completion(text=text, seconds=time.monotonic() - started)

    def ping(self) -> None:
        self.models()

    def version(self) -> str:
        return f"{self.flavour} API, models: {', '.join(self.models())}"

    def close(self) -> None:
        self.http.close()
