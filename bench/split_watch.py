"""The operator benchmark's baseline: a plain watch on TrafficSplits, in a process of its own
(as the operator's watch is), printing "MONOTONIC WEIGHT GENERATION PROGRAMMED" for each event: the
`backend`'s weight in the split (-1 if it has none), the split's generation and the one its
Programmed=True condition observed (-1 if none). CLOCK_MONOTONIC is the machine's, so the
bench compares these times with its own.

    python bench/split_watch.py KUBECONFIG NAMESPACE BACKEND

Started by `operator_propagation.py`, which ends it; a bench module, outside the package.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import urllib3
from kubernetes import client, watch

from smimesh.kube import clients

RETRIES = 50
"""Watches started again when the apiserver's cache lags the write that preceded them (504
"Too large resource version"), 0.2 s apart."""


def main(kubeconfig: str, namespace: str, backend: str) -> None:
    objects = client.CustomObjectsApi(clients.api_client(Path(kubeconfig)))
    for _ in range(RETRIES):
        try:
            watch_splits(objects, namespace, backend)
            return
        except client.ApiException as exc:
            if exc.status != 504:
                print(f"split_watch: the watch failed: {exc}", file=sys.stderr)
                return
            time.sleep(0.2)  # the cache catches up by itself; nothing to wait on
        except urllib3.exceptions.HTTPError:
            return  # the control plane went away
        except BrokenPipeError:
            return  # the bench stopped reading
    print(f"split_watch: the apiserver's cache lagged {RETRIES} times", file=sys.stderr)


def watch_splits(objects: client.CustomObjectsApi, namespace: str, backend: str) -> None:
    stream = watch.Watch()  # type: ignore[no-untyped-call]
    for event in stream.stream(  # type: ignore[no-untyped-call]
        objects.list_namespaced_custom_object,
        "split.smi-spec.io",
        "v1alpha4",
        namespace,
        "trafficsplits",
        # "Any": from the watch cache as it is, at once. Without it the apiserver holds the
        # watch until its cache has caught up with etcd's newest revision, which on an idle
        # resource waits for a progress notification (seconds, then a 504).
        resource_version="0",
        timeout_seconds=3600,
    ):
        at = time.monotonic()
        split = event["object"]
        backends = split["spec"]["backends"]
        weight = {b["service"]: b["weight"] for b in backends}.get(backend, -1)
        programmed = [
            c.get("observedGeneration", -1)
            for c in (split.get("status") or {}).get("conditions") or []
            if c.get("type") == "Programmed" and c.get("status") == "True"
        ]
        generation = split["metadata"].get("generation", 0)
        print(f"{at:.6f} {weight} {generation} {max(programmed, default=-1)}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
