"""The LLM runtime: an OpenAI-compatible server or Ollama, behind one small interface."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from kfm_ops.settings import LlmSettings


@dataclass(frozen=True)
class Completion:
    text: str
    seconds: float


class LlmClient:
    """The operations the checks need: list models, run a tiny completion."""

    flavour = "base"

    def __init__(self, section: LlmSettings) -> None:
        self.model = section.model
        headers = {"Authorization": f"Bearer {section.api_key.get_secret_value()}"} if section.api_key else {}
        self.http = httpx.Client(
            base_url=section.url, headers=headers,
            timeout=httpx.Timeout(section.query_timeout, connect=section.connect_timeout),
        )

    def models(self) -> list[str]:
        raise NotImplementedError

    def complete(self, prompt: str, *, max_tokens: int = 8) -> Completion:
        raise NotImplementedError

    def close(self) -> None:
        self.http.close()


class OpenAIClient(LlmClient):
    flavour = "openai"

    def models(self) -> list[str]:
        response = self.http.get("/v1/models")
        response.raise_for_status()
        return sorted(m["id"] for m in response.json()["data"])

    def complete(self, prompt: str, *, max_tokens: int = 8) -> Completion:
        started = time.monotonic()
        response = self.http.post("/v1/chat/completions", json={
            "model": self.model, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": prompt}],
        })
        response.raise_for_status()
        text = response.json()["choices"][0]["message"]["content"] or ""
        return Completion(text=text, seconds=time.monotonic() - started)


class OllamaClient(LlmClient):
    flavour = "ollama"

    def models(self) -> list[str]:
        response = self.http.get("/api/tags")
        response.raise_for_status()
        return sorted(m["name"] for m in response.json()["models"])

    def complete(self, prompt: str, *, max_tokens: int = 8) -> Completion:
        started = time.monotonic()
        response = self.http.post("/api/generate", json={
            "model": self.model, "prompt": prompt, "stream": False,
            "options": {"num_predict": max_tokens, "temperature": 0},
        })
        response.raise_for_status()
        return Completion(text=response.json().get("response", ""), seconds=time.monotonic() - started)


FLAVOURS: dict[str, type[LlmClient]] = {"openai": OpenAIClient, "ollama": OllamaClient}


def open(section: LlmSettings, *, write: bool) -> LlmClient:  # noqa: A001
    return FLAVOURS[section.flavour](section)


def ping(client: LlmClient) -> None:
    client.models()


def version(client: LlmClient) -> str:
    return f"{client.flavour} API, models: {', '.join(client.models())}"


def close(client: LlmClient) -> None:
    client.close()
