"""Least privilege: the credentials checks run with cannot write, where the server can say so.

A check session is read-only by construction, but a credential that could write is a risk of
its own: a leaked check runner becomes a writer. PostgreSQL (privileges) and Redis (ACL) can
be asked; OpenSearch without its security plugin and Neo4j Community cannot.
"""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.stores.cache import CacheStore
from kfm_ops.stores.postgis import PostgisStore

HINT = "give the checks a read-only account (KFM_{svc}__*); the owner's belong to kfm-maint only (__WRITE_*)"


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_postgis_check_role_cannot_write(postgis: PostgisStore) -> None:
    """The role the checks log in with is no superuser and may not change any table of the harness's schemas."""
    problem = postgis.write_capable()
    expect(problem is None, f"the check role could write: {problem}", postgis.where(),
           hint=HINT.format(svc="POSTGIS"))


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_cache_check_user_cannot_write(cache: CacheStore) -> None:
    """The Redis user the checks log in with may not run write commands (its ACL refuses them)."""
    problem = cache.write_capable()
    expect(problem is None, f"the check user could write: {problem}", cache.where(), hint=HINT.format(svc="CACHE"))
