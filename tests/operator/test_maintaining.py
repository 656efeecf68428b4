"""The CA maintenance round against the real apiserver: a leader writes a rotation step back
under the Secret's resourceVersion, a write that lost a race (409) changes nothing and the
next round decides again, a request is acted on once, and a follower only follows."""

from __future__ import annotations

import datetime

import pytest
from kubernetes import client

from smimesh.identity import authority, rotation, secretdata
from smimesh.kube import names
from smimesh.operator import authorities, leading, maintaining, rotating

pytestmark = pytest.mark.cluster

SECOND = datetime.timedelta(seconds=1)
POLICY = rotating.Policy(
    propagation=15 * SECOND, max_leaf_lifetime=15 * SECOND, drain_margin=SECOND
)


def _secret(api: client.ApiClient, namespace: str, **annotations: str) -> rotation.MeshCa:
    state = rotation.stable(authority.create("cluster.local"))
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=names.CA_SECRET, namespace=namespace, annotations=annotations
            ),
            data=authorities.encode(secretdata.dump(state)),
        ),
    )
    return state


def _maintainer(
    api: client.ApiClient, namespace: str, state: rotation.MeshCa, *, leader: bool = True
) -> maintaining.CaMaintainer:
    elector = leading.LeaderElector(api, namespace, "test")
    elector.leadership.set(leader)
    return maintaining.CaMaintainer(
        api, authorities.CaHolder(state), elector, namespace, "cluster.local", policy=POLICY
    )


def _annotate(api: client.ApiClient, namespace: str, **annotations: str) -> None:
    client.CoreV1Api(api).patch_namespaced_secret(
        names.CA_SECRET, namespace, {"metadata": {"annotations": annotations}}
    )


def _phase(api: client.ApiClient, namespace: str) -> str:
    secret = client.CoreV1Api(api).read_namespaced_secret(names.CA_SECRET, namespace)
    return authorities.decode(secret.data).get(secretdata.PHASE, "stable")


def test_a_stale_write_is_refused_and_the_next_round_decides_again(
    api: client.ApiClient, namespace: str
) -> None:
    state = _secret(api, namespace, **{names.ROTATE_REQUESTED_ANNOTATION: "r1"})
    maintainer = _maintainer(api, namespace, state)
    stale = maintainer.read()
    assert stale is not None
    _annotate(api, namespace, other="someone else wrote meanwhile")

    preparing = rotation.begin(state, authority.create("cluster.local"), now=maintainer.clock())
    assert maintainer.write(stale, secretdata.dump(preparing), "r1") is False
    assert _phase(api, namespace) == "stable", "the losing write changed nothing"

    found = maintainer.round()
    assert found.outcome == "written"
    assert [step.reason for step in found.steps] == ["RotationStarted"]
    assert found.swap is not None
    assert found.swap[0].phase is rotation.Phase.PREPARING
    secret = client.CoreV1Api(api).read_namespaced_secret(names.CA_SECRET, namespace)
    assert secret.metadata.annotations[names.ROTATE_HANDLED_ANNOTATION] == "r1"
    assert secret.metadata.annotations["other"] == "someone else wrote meanwhile"
    assert _phase(api, namespace) == "preparing"


def test_a_request_is_acted_on_once(api: client.ApiClient, namespace: str) -> None:
    state = _secret(api, namespace, **{names.ROTATE_REQUESTED_ANNOTATION: "r1"})
    maintainer = _maintainer(api, namespace, state)
    first = maintainer.round()
    assert first.outcome == "written"
    assert first.swap is not None
    maintainer.holder.swap(*first.swap)

    again = maintainer.round()
    assert again.outcome == "unchanged"
    assert again.steps == ()


def test_a_follower_swaps_in_what_the_leader_wrote_and_writes_nothing(
    api: client.ApiClient, namespace: str
) -> None:
    state = _secret(api, namespace)
    leader = _maintainer(api, namespace, state)
    follower = _maintainer(api, namespace, state, leader=False)
    _annotate(api, namespace, **{names.ROTATE_REQUESTED_ANNOTATION: "r1"})

    assert follower.round().outcome == "unchanged"
    assert _phase(api, namespace) == "stable"
    assert leader.round().outcome == "written"
    followed = follower.round()
    assert followed.outcome == "swapped"
    assert followed.swap is not None
    assert followed.swap[0].phase is rotation.Phase.PREPARING
