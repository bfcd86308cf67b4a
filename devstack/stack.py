"""The devstack API that tests and tools import: ``from devstack.stack import binary, StackError``.

The stack itself is the ``devstack`` package (``devstack/stack`` runs ``devstack/__main__.py``);
this module re-exports what other code needs, so its import path stays stable.
"""

from devstack.binaries import binary, jars, opensearch_jars
from devstack.config import Stack, harness_env, load_config
from devstack.errors import ProbeError, StackError

__all__ = ["ProbeError", "Stack", "StackError", "binary", "harness_env", "jars", "load_config", "opensearch_jars"]
