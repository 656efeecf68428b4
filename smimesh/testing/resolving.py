"""Name resolution for a workload in a network namespace: its hosts file names every Service
by ClusterIP (what cluster DNS would answer), and a `Resolver` keeps it so while the workload
runs — a Service made or deleted later is seen within `interval` seconds.

Owned by `workloads` (started once the namespace exists, stopped before it is removed);
writes through `isolating.Namespace.write_hosts`.
"""

from __future__ import annotations

import logging
import threading

from kubernetes import client

from smimesh.testing import isolating

log = logging.getLogger(__name__)


def services(api: client.ApiClient) -> list[tuple[str, str, str]]:
    """(namespace, name, cluster IP) of every Service that has a ClusterIP."""
    listed = client.CoreV1Api(api).list_service_for_all_namespaces()
    return sorted(
        (str(item.metadata.namespace), str(item.metadata.name), str(item.spec.cluster_ip))
        for item in listed.items
        if item.metadata and item.spec and item.spec.cluster_ip not in (None, "", "None")
    )


class Resolver:
    """`refresh()` rewrites the hosts file if the Services changed; `start()` does so every
    `interval` seconds on a thread of its own until `stop()`. A failed listing (apiserver
    away for a moment) keeps the last file and is logged."""

    def __init__(
        self,
        api: client.ApiClient,
        netns: isolating.Namespace,
        *,
        namespace: str,
        pod: str,
        interval: float = 2.0,
    ) -> None:
        self.api, self.netns = api, netns
        self.namespace, self.pod = namespace, pod
        self.interval = interval
        self._written: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Rewrite the hosts file if it would change; whether it did."""
        text = isolating.hosts_file(
            services(self.api), namespace=self.namespace, pod=self.pod, address=self.netns.address
        )
        if text == self._written:
            return False
        self.netns.write_hosts(text)
        self._written = text
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"hosts-{self.pod}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.refresh()
            except Exception as exc:  # the poller outlives a bad moment of the apiserver
                log.warning("%s: Services not listed, hosts file kept: %s", self.pod, exc)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
