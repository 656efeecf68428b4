"""`require_netns()`: tests of network-namespace workloads fail, loudly and with the reason,
on a host that cannot make namespaces (never skip: `make test` runs as root with iptables)."""

from __future__ import annotations

import pytest

from smimesh.testing import isolating


def require_netns() -> None:
    reason = isolating.unsupported()
    if reason is not None:
        pytest.fail(f"workloads in network namespaces cannot run here: {reason}")
