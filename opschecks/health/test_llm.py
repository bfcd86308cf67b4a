"""LLM runtime health: the configured model is served and answers a canary prompt in budget."""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.stores.llm import LlmStore

CANARY_PROMPT = "Reply with the single word OK."


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_llm_model_listed(llm: LlmStore) -> None:
    """The configured model (KFM_LLM__MODEL) is listed by the runtime."""
    models = llm.models()
    expect(llm.model in models, f"model {llm.model!r} is not served", llm.where(), models,
           hint="load the model in the runtime, or fix KFM_LLM__MODEL (offending ids = models that are served)")


@pytest.mark.risk("medium")
def test_llm_canary_completion(llm: LlmStore) -> None:
    """A canary completion returns non-empty text within the latency budget (KFM_LLM__LATENCY_BUDGET)."""
    where = llm.where(f"model {llm.model}")
    result = llm.complete(CANARY_PROMPT, max_tokens=8)
    expect(result.text.strip(), "canary completion returned empty text", where, hint="check the model and runtime")
    budget = llm.section.latency_budget
    expect(result.seconds <= budget, f"canary completion took {result.seconds:.2f}s, over the {budget}s budget",
           where, hint="the runtime is overloaded or on a slow device; check its load, or revisit the budget")
