"""devstack's optional services: off unless asked for, stopped before what they follow, configured to join it."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.cli import parser
from devstack.config import Stack, defaults
from devstack.services import services
from devstack.services.opensearch import CLUSTERED, SINGLE, TRANSPORT_OFFSET, OpenSearch, OpenSearchNode2


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return Stack({**defaults(), "DEVSTACK_HOME": str(tmp_path)})


def test_a_plain_up_starts_no_optional_service(stack: Stack) -> None:
    names = [s.name for s in services(stack)]
    assert "opensearch-2" not in names and "postgis-standby" not in names
    every = [s.name for s in services(stack, optional=True)]
    # down goes in reverse: each optional service stops before the one it follows
    assert every.index("postgis-standby") == every.index("postgis") + 1
    assert every.index("opensearch-2") == every.index("opensearch") + 1
    assert [s.name for s in services(stack, ["opensearch-2"])] == ["opensearch-2"]


def test_node_1_is_single_node_unless_asked_for_a_cluster(stack: Stack) -> None:
    node1 = OpenSearch(stack)
    assert node1.mode == SINGLE and "discovery.type: single-node" in node1.discovery()
    assert [k for k, _ in node1.ports()] == ["DEVSTACK_OPENSEARCH_PORT"]
    node1.mode = CLUSTERED
    config = node1.discovery()
    first, second = (stack.port(k) + TRANSPORT_OFFSET for k in ("DEVSTACK_OPENSEARCH_PORT",
                                                                 "DEVSTACK_OPENSEARCH_NODE2_PORT"))
    assert "single-node" not in config and f"transport.port: {first}\n" in config
    assert f'cluster.initial_cluster_manager_nodes: ["127.0.0.1:{first}"]' in config
    assert f'"127.0.0.1:{second}"' in config and "cluster.routing.rebalance.enable: replicas" in config
    assert node1.ports()[-1][1] == first  # the fixed transport port is checked free before a start


def test_node_2_only_joins_node_1(stack: Stack) -> None:
    config = OpenSearchNode2(stack).discovery()
    first = stack.port("DEVSTACK_OPENSEARCH_PORT") + TRANSPORT_OFFSET
    assert f'discovery.seed_hosts: ["127.0.0.1:{first}"]' in config
    assert "initial_cluster_manager_nodes" not in config  # it never forms a cluster of its own


@pytest.mark.parametrize("value", ["0", "3", "two"])
def test_opensearch_nodes_takes_one_or_two(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["up", "--opensearch-nodes", value])
    assert "--opensearch-nodes" in capsys.readouterr().err


def test_the_options_parse() -> None:
    args = parser().parse_args(["up", "postgis", "--opensearch-nodes", "2", "--postgis-standby"])
    assert (args.services, args.opensearch_nodes, args.postgis_standby) == (["postgis"], 2, True)
    assert parser().parse_args(["up"]).opensearch_nodes is None
