"""A runner for `test_reaping`: a local mesh (operator) with two workloads, one on a host
address and one in a network namespace, on the session's cluster; it writes what it made to
a JSON report and waits to be killed. Run as `python -m tests.testing.runner KUBECONFIG
KUBECTL REPORT`."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

from smimesh.testing import clusters, meshes


def main(kubeconfig: str, kubectl: str, report: str) -> None:
    cluster = clusters.Cluster("local", Path(kubeconfig), kubectl)
    with meshes.LocalMesh(cluster) as mesh:
        assert mesh.operator is not None
        namespace = mesh.namespace(f"reap-{uuid.uuid4().hex[:6]}")
        mesh.service(namespace, "a", {"app": "a"})
        mesh.service(namespace, "b", {"app": "b"})
        near = mesh.workload(namespace, "a-1", "a", {"app": "a"})
        far = mesh.workload(namespace, "b-1", "b", {"app": "b"}, isolation="netns")
        assert far.netns is not None
        made = {
            "groups": [mesh.operator.process.pid]
            + [p.pid for w in (near, far) for p in w.processes.values()],
            "addresses": [near.address, far.address],
            "netns": far.netns.name,
            "veth": far.netns.host_veth,
            "directories": [str(mesh.work_dir), str(near.log_dir), str(far.log_dir),
                            str(far.netns.etc)],
        }  # fmt: skip
        Path(report).write_text(json.dumps(made))
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main(*sys.argv[1:4])
