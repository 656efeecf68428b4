"""ServiceAccount tokens as the kubelet mints them for a projected volume: a TokenRequest for
an audience, bound to the Pod (its name and uid), so the apiserver's TokenReview names the Pod
and stops accepting the token once that Pod is gone.

Used by `workloads` (each local workload's sidecar token) and `clusters` (tokens for tests and
benchmarks that speak to the config server as a given Pod).
"""

from __future__ import annotations

from kubernetes import client

from smimesh.kube import names

MIN_EXPIRATION_SECONDS = 600
"""The shortest lifetime the apiserver grants a TokenRequest."""


class TokenRequestError(RuntimeError):
    """No token was issued; the message says for whom and why."""


def bound_token(
    api: client.ApiClient,
    namespace: str,
    service_account: str,
    pod: str,
    *,
    expiration_seconds: int = 3600,
    audience: str = names.TOKEN_AUDIENCE,
) -> str:
    """A token of the ServiceAccount bound to the Pod, for `audience` ("": the apiserver's)."""
    core = client.CoreV1Api(api)
    try:
        found = core.read_namespaced_pod(pod, namespace)
        uid = found.metadata.uid if found.metadata else None
        response = core.create_namespaced_service_account_token(
            service_account,
            namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=[audience] if audience else [],
                    expiration_seconds=expiration_seconds,
                    bound_object_ref=client.V1BoundObjectReference(
                        api_version="v1", kind="Pod", name=pod, uid=uid
                    ),
                )
            ),
        )
    except client.ApiException as exc:
        raise TokenRequestError(
            f"no token for {namespace}/{service_account} bound to pod {pod}: "
            f"{exc.status} {exc.reason}"
        ) from None
    if response.status is None or not response.status.token:
        raise TokenRequestError(f"no token for {namespace}/{service_account} bound to pod {pod}")
    return str(response.status.token)
