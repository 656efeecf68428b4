"""Transparent interception: the iptables rules `smimesh sidecar init` writes in the
workload's network namespace, and `SO_ORIGINAL_DST`, which tells the redirected listeners
where a connection was really going.

Rules follow Istio/OSM: outbound TCP (OUTPUT) is redirected to the outbound listener, inbound
TCP (PREROUTING) to the inbound listener; the proxy's own sockets carry a mark (SO_MARK; or the
proxy runs as `proxy_uid`) and loopback, the admin port and excluded ports pass untouched.
`outbound` and `inbound` call `original_destination`.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import subprocess
from collections.abc import Sequence

SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80
OUTBOUND_CHAIN = "SMIMESH_OUTBOUND"
INBOUND_CHAIN = "SMIMESH_INBOUND"


def original_destination(sock: socket.socket) -> tuple[str, int] | None:
    """The (address, port) a REDIRECTed connection was sent to, or None if not redirected."""
    try:
        if sock.family == socket.AF_INET6:
            raw = sock.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
            port = struct.unpack_from("!H", raw, 2)[0]
            address = str(ipaddress.IPv6Address(raw[8:24]))
        else:
            raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port = struct.unpack_from("!H", raw, 2)[0]
            address = socket.inet_ntoa(raw[4:8])
    except OSError:
        return None
    if (address, port) == sock.getsockname()[:2]:
        return None
    return address, port


def rules(
    *,
    outbound_port: int,
    inbound_port: int,
    mark: int | None,
    proxy_uid: int | None = None,
    exclude_inbound_ports: Sequence[int] = (),
    exclude_outbound_ports: Sequence[int] = (),
    exclude_outbound_cidrs: Sequence[str] = (),
) -> list[list[str]]:
    """`iptables` argument lists (nat table), in order; idempotent when run on a fresh netns."""
    nat = ["-t", "nat"]
    out: list[list[str]] = [
        [*nat, "-N", OUTBOUND_CHAIN],
        [*nat, "-N", INBOUND_CHAIN],
        [*nat, "-A", "OUTPUT", "-p", "tcp", "-j", OUTBOUND_CHAIN],
        [*nat, "-A", "PREROUTING", "-p", "tcp", "-j", INBOUND_CHAIN],
    ]
    if mark is not None:
        out.append([*nat, "-A", OUTBOUND_CHAIN, "-m", "mark", "--mark", hex(mark), "-j", "RETURN"])
    if proxy_uid is not None:
        out.append(
            [*nat, "-A", OUTBOUND_CHAIN, "-m", "owner", "--uid-owner", str(proxy_uid), "-j",
             "RETURN"]
        )  # fmt: skip
    out.append([*nat, "-A", OUTBOUND_CHAIN, "-o", "lo", "-j", "RETURN"])
    out.append([*nat, "-A", OUTBOUND_CHAIN, "-d", "127.0.0.0/8", "-j", "RETURN"])
    for cidr in exclude_outbound_cidrs:
        out.append([*nat, "-A", OUTBOUND_CHAIN, "-d", cidr, "-j", "RETURN"])
    for port in exclude_outbound_ports:
        out.append([*nat, "-A", OUTBOUND_CHAIN, "-p", "tcp", "--dport", str(port), "-j", "RETURN"])
    out.append(
        [*nat, "-A", OUTBOUND_CHAIN, "-p", "tcp", "-j", "REDIRECT", "--to-ports",
         str(outbound_port)]
    )  # fmt: skip
    for port in exclude_inbound_ports:
        out.append([*nat, "-A", INBOUND_CHAIN, "-p", "tcp", "--dport", str(port), "-j", "RETURN"])
    out.append(
        [*nat, "-A", INBOUND_CHAIN, "-p", "tcp", "-j", "REDIRECT", "--to-ports",
         str(inbound_port)]
    )  # fmt: skip
    return out


def apply(rule_args: Sequence[Sequence[str]], *, iptables: str = "iptables") -> None:
    """Run each rule; raises `subprocess.CalledProcessError` with iptables' message."""
    for args in rule_args:
        subprocess.run([iptables, *args], check=True, capture_output=True, text=True)
