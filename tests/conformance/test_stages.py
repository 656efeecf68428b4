"""What a stage does for a mesh that cannot do everything smimesh does: cases that need a
permissive namespace skip with the profile's reason, and without status conditions split
shares are measured again until they settle (with conditions, once). Apps are in-memory
`apps.App` handles; kubectl is `true`, so nothing here needs a cluster."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from smimesh.conformance import profiles, running, stages
from smimesh.conformance.cases import splits
from smimesh.testing import clusters


@dataclass
class Backend:
    caller: str
    received: dict[str, int] = field(default_factory=dict)

    def request(
        self, method: str, path: str, *, body: Mapping[str, Any] | None = None, timeout: float
    ) -> Any:
        if method == "DELETE":
            self.received.clear()
        return {"received": dict(self.received)}


@dataclass
class Caller:
    """Sends every call to `b` until `settle_after` calls, then 75/25 to b and c."""

    caller: str
    backends: dict[str, Backend]
    settle_after: int
    calls: int = 0

    def request(
        self, method: str, path: str, *, body: Mapping[str, Any] | None = None, timeout: float
    ) -> Any:
        if path != "/call" or body is None:
            return {"received": {}}
        self.calls += 1
        count = int(body["count"])
        share_b = 1.0 if self.calls <= self.settle_after else 0.75
        for name, n in (("b", round(count * share_b)), ("c", count - round(count * share_b))):
            got = self.backends[name].received
            got[self.caller] = got.get(self.caller, 0) + n
        return {"ok": count, "failed": 0, "codes": {"200": count}}


def _stage(profile: profiles.Profile, *, settle_after: int = 0) -> tuple[stages.Stage, Caller]:
    cluster = clusters.Cluster("existing", Path("/dev/null"), shutil.which("true") or "true")
    spaces = []
    for name in ("s", "p"):
        space = stages.Namespace(name)
        backends = {app: Backend(f"{name}/{app}-1") for app in ("b", "c")}
        caller = Caller(f"{name}/a-1", backends, settle_after)
        space.apps.update({"a": caller, **backends})
        spaces.append(space)
    stage = stages.Stage(
        cluster,
        strict=spaces[0],
        open=spaces[1],
        programmed=profile.programmed,
        permissive=profile.no_permissive,
    )
    return stage, caller


def test_cases_needing_a_permissive_namespace_skip_with_the_profiles_reason() -> None:
    stage, _ = _stage(profiles.lookup("osm"))
    chosen = running.select(["access/permissive-allows-all", "split/weights-75-25"])
    results = running.run_cases(stage, chosen)
    assert [r.outcome for r in results] == ["skipped", "skipped"]
    assert all("mesh-wide" in r.message for r in results)


def test_the_same_cases_run_where_the_profile_can_make_a_namespace_permissive() -> None:
    stage, _ = _stage(profiles.lookup("linkerd"))
    (result,) = running.run_cases(stage, running.select(["split/weights-75-25"]))
    assert (result.outcome, result.message) == ("passed", "")


@pytest.mark.fast
def test_without_status_conditions_shares_are_measured_until_they_settle() -> None:
    stage, caller = _stage(profiles.lookup("linkerd"), settle_after=2)
    splits.expect_measured(stage, {"b": 0.75, "c": 0.25})
    assert caller.calls == 3


@pytest.mark.fast
def test_with_status_conditions_a_wrong_share_fails_at_once() -> None:
    stage, caller = _stage(profiles.lookup("smimesh"), settle_after=2)
    with pytest.raises(stages.CaseFailedError, match=r"expected 0\.75"):
        splits.expect_measured(stage, {"b": 0.75, "c": 0.25})
    assert caller.calls == 1


def test_split_cases_that_read_our_conditions_skip_on_other_meshes() -> None:
    stage, _ = _stage(profiles.lookup("linkerd"))
    (result,) = running.run_cases(stage, running.select(["split/two-splits-one-root"]))
    assert result.outcome == "skipped"
    assert "status conditions" in result.message
