"""LLM runtime health: the configured model is served and answers a canary prompt in budget."""

from __future__ import annotations

from typing import Any

import pytest

from kfm_ops.checks_support import call, expect

CANARY_PROMPT = "Reply with the single word OK."


def _where(kfm_settings: Any) -> str:
    return f"llm {kfm_settings.llm.where} ({kfm_settings.llm.flavour} API)"


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_llm_model_listed(llm: Any, kfm_settings: Any) -> None:
    """The configured model (KFM_LLM__MODEL) is listed by the runtime."""
    where = _where(kfm_settings)
    model = kfm_settings.llm.model
    models = call("listing models failed", where, llm.models)
    expect(model in models, f"model {model!r} is not served", where, models, first_n=kfm_settings.checks.first_n,
           hint="load the model in the runtime, or fix KFM_LLM__MODEL (offending ids = models that are served)")


@pytest.mark.risk("medium")
def test_llm_canary_completion(llm: Any, kfm_settings: Any) -> None:
    """A canary completion returns non-empty text within the latency budget (KFM_LLM__LATENCY_BUDGET)."""
    model = kfm_settings.llm.model
    where = f"{_where(kfm_settings)} model {model}"
    result = call("canary completion failed", where, llm.complete, CANARY_PROMPT, max_tokens=8,
                  hint="check the runtime log and that the model is loaded")
    expect(result.text.strip(), "canary completion returned empty text", where, hint="check the model and runtime")
    budget = kfm_settings.llm.latency_budget
    expect(result.seconds <= budget, f"canary completion took {result.seconds:.2f}s, over the {budget}s budget",
           where, hint="the runtime is overloaded or on a slow device; check its load, or revisit the budget")
