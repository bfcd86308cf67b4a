"""Redaction: registered secrets and secret-shaped text are masked wherever they appear."""

from __future__ import annotations

import pytest

from kfm_ops.redact import MASK, redact, redact_obj, register_secret

CANARY = "canary-Secret-7f3a9c"


@pytest.mark.parametrize("text", [
    f"postgresql://kfm_owner:{CANARY}@127.0.0.1:5432/kfm",
    f"Authorization: Bearer {CANARY}",
    f"password={CANARY} host=x",
    f'{{"api_key": "{CANARY}"}}',
    f"token: {CANARY}",
])
def test_secret_shaped_text_is_masked(text: str) -> None:
    assert CANARY not in redact(text)


def test_registered_secrets_are_masked_anywhere() -> None:
    register_secret("s3cr3t-registered-value")
    assert redact("the value s3cr3t-registered-value leaked") == f"the value {MASK} leaked"
    assert redact_obj({"k": ["s3cr3t-registered-value", 1]}) == {"k": [MASK, 1]}


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    assert redact("abc is a word") == "abc is a word"
