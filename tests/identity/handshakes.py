"""One real TLS connection over loopback between a server thread and a client, and what each
side saw: shared by the mTLS and rotation tests."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field

from smimesh.identity import errors, spiffe, tlscontexts

TRUST_DOMAIN = "cluster.local"
SERVER = spiffe.SpiffeId(TRUST_DOMAIN, "shop", "api")
CLIENT = spiffe.SpiffeId(TRUST_DOMAIN, "shop", "web")


@dataclass
class Outcome:
    """What each side of one connection saw."""

    server_saw: spiffe.SpiffeId | None = None
    client_saw: spiffe.SpiffeId | None = None
    client_received: bytes = b""
    alpn: str | None = None
    errors: list[BaseException] = field(default_factory=list)


def connect(server: ssl.SSLContext, client: ssl.SSLContext) -> Outcome:
    """One TLS connection between two threads over a real loopback socket."""
    outcome = Outcome()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        try:
            connection, _ = listener.accept()
            with server.wrap_socket(connection, server_side=True) as tls:
                outcome.server_saw = tlscontexts.peer_identity(tls, trust_domain=TRUST_DOMAIN)
                tls.sendall(b"hello " + str(outcome.server_saw).encode())
        except (OSError, errors.IdentityError) as exc:
            outcome.errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=5) as raw,
            client.wrap_socket(raw) as tls,
        ):
            outcome.client_saw = tlscontexts.peer_identity(tls)
            outcome.alpn = tls.selected_alpn_protocol()
            outcome.client_received = tls.recv(1024)
    except OSError as exc:
        outcome.errors.append(exc)
    finally:
        thread.join(10)
        listener.close()
    return outcome
