"""mTLS credentials from files (cert chain, key, trust bundle), re-read when they change so
certificates rotate without dropping connections: new handshakes use the new material,
established connections keep theirs.

Created by `commands` from `settings`; consulted by `inbound` (server side) and the
connector (client side) through `context.Credentials`. (Placeholder until smimesh.identity's
context builders are committed: no credentials, so the sidecar speaks plaintext.)
"""

from __future__ import annotations

import asyncio
import ssl

from smimesh.sidecar import settings


class FileCredentials:
    def server_context(self) -> ssl.SSLContext | None:
        return None

    def client_context(self) -> ssl.SSLContext | None:
        return None

    def peer_identity(self, peer_der: bytes | None) -> str | None:
        return None

    async def watch(self) -> None:
        await asyncio.Event().wait()


def from_settings(config: settings.SidecarSettings) -> FileCredentials | None:
    return None
