"""The real node's pure parts: the preflight's readings of `iptables -S` and `ip addr`
output, and the names images are imported under (the node tier runs them for real)."""

from __future__ import annotations

import pytest

from smimesh.testing import images, nodechecks

pytestmark = pytest.mark.fast

HOST_NAT = """-P PREROUTING ACCEPT
-P OUTPUT ACCEPT
-N DOCKER
-N SMIMESH_INBOUND
-N KUBE-SERVICES
-A OUTPUT -j SMIMESH_INBOUND
-A OUTPUT -j KUBE-SERVICES
"""


def test_chains_of_a_node_in_the_host_nat_table_are_found_once_each() -> None:
    assert nodechecks.leaked_chains(HOST_NAT) == ["SMIMESH_INBOUND", "KUBE-SERVICES"]


def test_a_host_nat_table_of_others_is_clean() -> None:
    assert nodechecks.leaked_chains("-P OUTPUT ACCEPT\n-N DOCKER\n-A OUTPUT -j DOCKER\n") == []


def test_an_address_is_taken_only_when_an_interface_carries_it_exactly() -> None:
    shown = "3: smn-1a2b    inet 10.79.0.1/30 scope global smn-1a2b\\       valid_lft forever\n"
    assert nodechecks.address_taken("10.79.0.1", shown)
    assert not nodechecks.address_taken("10.79.0.10", shown)
    assert not nodechecks.address_taken("10.79.0.2", shown)


@pytest.mark.parametrize(
    ("name", "full"),
    [
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("org/app:2", "docker.io/org/app:2"),
        ("registry.k8s.io/pause:3.10.1", "registry.k8s.io/pause:3.10.1"),
        ("localhost/x:1", "localhost/x:1"),
        ("smimesh.local/node-test:1", "smimesh.local/node-test:1"),
    ],
)
def test_images_are_imported_under_the_name_the_kubelet_asks_for(name: str, full: str) -> None:
    assert images.full_name(name) == full
