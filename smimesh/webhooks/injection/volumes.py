"""The identity volume: a projected, audience-bound ServiceAccount token plus the trust bundle.

Called by `injecting` (adds the volume) and `sidecars` (mounts it). The token has audience
`smimesh` and a short expiry, so it is useless against the apiserver and other services; the
operator's CSR API checks it with a TokenReview. The bundle ConfigMap is optional so that pods
start even before the operator has published it.
"""

from __future__ import annotations

from typing import Any

from smimesh.kube import names
from smimesh.webhooks.injection import settings

MOUNT_PATH = "/var/run/secrets/smimesh.dev/identity"
TOKEN_FILE = "token"
BUNDLE_FILE = "ca.crt"


def identity_volume(config: settings.InjectionSettings) -> dict[str, Any]:
    return {
        "name": names.IDENTITY_VOLUME,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": config.token_audience,
                        "expirationSeconds": config.token_expiration_seconds,
                        "path": TOKEN_FILE,
                    }
                },
                {
                    "configMap": {
                        "name": config.trust_bundle_config_map,
                        "items": [{"key": BUNDLE_FILE, "path": BUNDLE_FILE}],
                        "optional": True,
                    }
                },
            ]
        },
    }


def identity_mount() -> dict[str, Any]:
    return {"name": names.IDENTITY_VOLUME, "mountPath": MOUNT_PATH, "readOnly": True}
