"""The intent gate's decision table: flags × settings × the database's marker."""

from __future__ import annotations

import pytest

from kfm_ops.errors import ActionRefused
from maintenance.gates import CONFIRM_WORD, Intent, check_intent

ALLOWED = [
    # (flags, settings environment, database marker) -> the environment acted on
    (Intent("a"), "dev", "dev", "dev"),
    (Intent("a", environment="staging"), "staging", "staging", "staging"),
    (Intent("a", environment="production", confirm=CONFIRM_WORD), "production", "production", "production"),
    (Intent("a", dry_run=True, environment="production"), "production", "production", "production"),
]
STAMPING = [  # an unmarked database: only the stamping action, with the environment given explicitly
    (Intent("migrate", environment="dev"), "dev", "dev"),
    (Intent("migrate", environment="production", confirm=CONFIRM_WORD), "production", "production"),
]
REFUSED = [
    (Intent("a"), "dev", None, "carries no environment marker"),
    (Intent("a", environment="dev"), "dev", None, "carries no environment marker"),
    (Intent("a"), "production", "production", "targets production"),
    (Intent("a", environment="production"), "production", "production", "targets production"),
    (Intent("a", dry_run=True), "production", "production", "targets production"),
    (Intent("a", environment="production", confirm="yes"), "production", "production", "targets production"),
    (Intent("a", environment="staging"), "dev", "dev", "disagrees with the settings"),
    (Intent("a"), "dev", "production", "says it is 'production'"),
    (Intent("a", environment="production", confirm=CONFIRM_WORD), "production", "dev", "says it is 'dev'"),
    (Intent("a", confirm=CONFIRM_WORD.lower()), "dev", "dev", "is not the confirmation word"),
]


@pytest.mark.parametrize(("intent", "settings", "marker", "target"), ALLOWED)
def test_allowed(intent: Intent, settings: str, marker: str | None, target: str) -> None:
    assert check_intent(intent, settings_environment=settings, database_marker=marker) == target


@pytest.mark.parametrize(("intent", "settings", "target"), STAMPING)
def test_stamping_an_unmarked_database(intent: Intent, settings: str, target: str) -> None:
    assert check_intent(intent, settings_environment=settings, database_marker=None, stamping=True) == target


def test_stamping_needs_the_environment_given_and_production_confirmed() -> None:
    with pytest.raises(ActionRefused, match="carries no environment marker"):
        check_intent(Intent("migrate"), settings_environment="dev", database_marker=None, stamping=True)
    with pytest.raises(ActionRefused, match="targets production"):
        check_intent(Intent("migrate", environment="production"), settings_environment="production",
                     database_marker=None, stamping=True)


@pytest.mark.parametrize(("intent", "settings", "marker", "why"), REFUSED)
def test_refused_with_a_reason_and_the_fix(intent: Intent, settings: str, marker: str | None, why: str) -> None:
    with pytest.raises(ActionRefused) as refused:
        check_intent(intent, settings_environment=settings, database_marker=marker)
    assert why in refused.value.message
    assert refused.value.hint and refused.value.exit_code == 3
