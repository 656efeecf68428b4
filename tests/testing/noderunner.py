"""A runner for `test_node_teardown`: a real node (on the link and Pod CIDR of its
environment, beside the session's) with one Pod running; it writes what it made to a JSON
report and waits to be killed. Run as `python -m tests.testing.noderunner REPORT`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from smimesh.testing import clusters, nodenetwork, nodes
from tests.testing import nodepods


def main(report: str, name: str, host: str, node: str, pod_cidr: str) -> None:
    network = nodenetwork.NodeNetwork(name, host_address=host, node_address=node, pod_cidr=pod_cidr)
    with nodes.running(network=network) as made:
        plane = made.plane
        cluster = clusters.Cluster("node", plane.kubeconfig, str(plane.binaries.kubectl))
        nodepods.apply(cluster, "default", nodepods.pod("doomed", "sleep infinity"))
        nodepods.running(cluster, "default", "doomed")
        Path(report).write_text(json.dumps({"run_dir": str(made.node.run_dir),
                                            "cgroup": made.node.cgroup,
                                            "cni": made.node.cni_network}))  # fmt: skip
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main(*sys.argv[1:6])
