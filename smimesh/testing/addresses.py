"""Addresses of local workloads. `address` isolation: any address of `LOCAL_RANGE`, a range
made local to the host (`ip route add local ... dev lo`), so it can be bound without
configuring each one. `netns` isolation: an address of `NETNS_RANGE`, routed by the host to
the workload's veth (`isolating`); it must lie outside the local range, whose local route
would deliver the packets on the host instead. The first address of the local range is the
gateway that namespaces route through.

Neither is 127/8: the apiserver refuses loopback addresses in EndpointSlices. Used by
`workloads` and `isolating`.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import subprocess

LOCAL_RANGE = os.environ.get("SMIMESH_LOCAL_RANGE", "10.77.0.0/16")
NETNS_RANGE = os.environ.get("SMIMESH_NETNS_RANGE", "10.78.0.0/16")
PROBE_PORT = 15000  # the sidecar's admin port: an address someone uses has it bound


class AddressError(RuntimeError):
    """No address could be had; the message says why and what to do."""


def ensure_local_range(cidr: str = LOCAL_RANGE) -> ipaddress.IPv4Network:
    network = ipaddress.IPv4Network(cidr)
    shown = subprocess.run(
        ["ip", "route", "show", "table", "local", str(network)],
        capture_output=True,
        text=True,
        check=False,
    )
    if str(network) in shown.stdout:
        return network
    added = subprocess.run(
        ["ip", "route", "add", "local", str(network), "dev", "lo"],
        capture_output=True,
        text=True,
        check=False,
    )
    if added.returncode != 0 and "File exists" not in added.stderr:
        raise AddressError(
            f"cannot make {network} local to this host ({added.stderr.strip()}); run once as "
            f"root: ip route add local {network} dev lo  (or set SMIMESH_LOCAL_RANGE)"
        )
    return network


def gateway() -> str:
    """The host address network namespaces route through: the local range's first address
    (never handed to a workload), which the host answers ARP for on every link."""
    return str(ensure_local_range()[1])


def allocate_local(rng: random.Random | None = None) -> str:
    """An address of the local range that nobody on this host listens on."""
    network = ensure_local_range()
    rng = rng or random.Random()
    for _ in range(200):
        address = str(network[rng.randrange(2, network.num_addresses - 1)])
        with socket.socket() as probe:
            try:
                probe.bind((address, PROBE_PORT))
            except OSError:
                continue
        return address
    raise AddressError(f"no free address in {network}")


def routed(address: str) -> bool:
    """Whether the host has a route for exactly this address."""
    shown = subprocess.run(
        ["ip", "route", "show", f"{address}/32"], capture_output=True, text=True, check=False
    )
    return bool(shown.stdout.strip())


def allocate_routed(rng: random.Random | None = None) -> str:
    """An address of `NETNS_RANGE` the host routes nowhere yet (`isolating` claims it by
    adding the route; a lost race fails there with "File exists")."""
    network = ipaddress.IPv4Network(NETNS_RANGE)
    if network.overlaps(ipaddress.IPv4Network(LOCAL_RANGE)):
        raise AddressError(f"SMIMESH_NETNS_RANGE {network} overlaps the local range {LOCAL_RANGE}")
    rng = rng or random.Random()
    for _ in range(200):
        address = str(network[rng.randrange(1, network.num_addresses - 1)])
        if not routed(address):
            return address
    raise AddressError(f"no free address in {network}")
