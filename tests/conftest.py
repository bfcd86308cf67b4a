"""kfm-ops's own test suite: its fixtures live in small plugins, one concern each.

- :mod:`tests.plugins.stack` — write access to the local stack (through the plugin's
  ``kfm_write_access`` gate) and the derived sample catalog;
- :mod:`tests.plugins.baselines` — the contract state a proof needs in place;
- :mod:`tests.plugins.faults` — injecting faults into the shared stack and restoring them;
- :mod:`tests.plugins.scratch` — throw-away servers for faults the shared stack must not take;
- :mod:`tests.plugins.tls` — the stack's TLS endpoints and a CA the servers do not know;
- :mod:`tests.plugins.cluster` — the optional services a test starts itself: a second OpenSearch node.

Checks under test run in separate pytest processes (tests/helpers.py), so a fault
injected here is seen by a real check session.
"""

pytest_plugins = ("tests.plugins.stack", "tests.plugins.baselines", "tests.plugins.faults", "tests.plugins.scratch",
                  "tests.plugins.tls", "tests.plugins.cluster", "tests.plugins.live")
