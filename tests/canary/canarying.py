"""What the canary tests share: the workloads (the test app as Deployments, the load
generator inside the mesh) and `Recorder`, which watches a real controller drive smimesh —
the TrafficSplit it writes, its own phase — and counts, from the server sidecars' own
counters, the requests each version really answered at every weight the split held.

A step's count starts once smimesh reports the split `Programmed` for its generation (every
connected proxy ACKed it), and at least `SETTLE` seconds after the change was seen; it ends
before the next change (the split is read before and after each scrape). So each step
measures the share the mesh gives that split once it says it holds it, not the handover
between two; how long the mesh took to say so is recorded per step (`programmed`).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
from kubernetes import client, utils

from smimesh._aio import waiting
from smimesh.conformance import apps, deploying, profiles
from smimesh.kube import names
from smimesh.smi import split
from smimesh.telemetry import trafficstats
from smimesh.testing import clusters
from tests.testing import nodepods

SETTLE = 1.0
LOADER = "loadtester"
"""The load generator whose requests the shares are counted from (`Recorder`)."""
POLL = 0.5
PROFILE = profiles.PROFILES["smimesh"]
Object = dict[str, Any]


def namespace(name: str) -> Object:
    """A meshed, permissive namespace (Flagger and Argo create no TrafficTarget)."""
    return PROFILE.namespace(name, "permissive")


def account(namespace: str, name: str) -> Object:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace}}  # fmt: skip


def deployment(
    namespace: str, name: str, image: str, *, env: Mapping[str, str] | None = None
) -> Object:
    """A Deployment of the test app (label `app: name`, its own ServiceAccount `name`);
    `env` makes a release (SMIMESH_RELEASE), a bad one (SMIMESH_APP_FAILURES) or the load
    generator (SMIMESH_LOAD_URL)."""
    pod = deploying.app_pod(namespace, name, name, {"app": name}, PROFILE, image)
    container = pod["spec"]["containers"][0]
    container["env"].extend({"name": k, "value": v} for k, v in (env or {}).items())
    pod["spec"]["terminationGracePeriodSeconds"] = 5
    template = {"metadata": {k: v for k, v in pod["metadata"].items() if k != "name"},
                "spec": pod["spec"]}  # fmt: skip
    template["metadata"].pop("namespace", None)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": template},
    }  # fmt: skip


def loader(namespace: str, url: str, image: str, *, rps: float = 20, name: str = LOADER) -> Object:
    """The load generator inside the mesh: the test app calling `url` steadily."""
    return deployment(namespace, name, image,
                      env={"SMIMESH_LOAD_URL": url, "SMIMESH_LOAD_RPS": str(rps)})  # fmt: skip


def loaded(cluster: clusters.Cluster, namespace: str, name: str = LOADER) -> dict[str, int]:
    """A load generator's tally of its calls: {ok, failed, and a count per outcome (status
    code or error name)}, read from its control port."""
    total = {"ok": 0, "failed": 0}
    for tally in _tallies(cluster, namespace, name):
        for calls in tally["calls"].values():
            total["ok"] += calls["ok"]
            total["failed"] += calls["failed"]
            for code, count in calls["codes"].items():
                total[code] = total.get(code, 0) + count
    return total


def assert_bad_release_failed(outcome: Outcome, canary: str) -> None:
    """The bad release's 500s are what failed: the loader got some, and every other of its
    calls succeeded; the Pods counted failures only behind `canary`. A step the recorder
    could not count (`Programmed` came late under load, so the step ended first) then still
    shows the failures at the caller, where the controller's analysis saw them too."""
    assert outcome.loaded.get("500", 0) > 0, (
        f"the bad release answered no 500: {outcome.failures()}"
    )
    assert outcome.loaded["failed"] == outcome.loaded["500"], outcome.failures()
    counted: Counter[str] = Counter()
    for step in outcome.recorder.steps:
        counted.update(step.failed)
    assert set(+counted) <= {canary}, counted


def load_errors(cluster: clusters.Cluster, namespace: str, name: str = LOADER) -> list[str]:
    """The load generator's calls that ended without a status (the newest 50): when and why,
    and its sidecar's last log lines if there are any; what a failed check prints."""
    errors = [f"{e['at']} {e['error']} ({e['cause']})"
              for tally in _tallies(cluster, namespace, name) for e in tally["errors"]]  # fmt: skip
    if errors:
        logs = cluster.kubectl("logs", "-n", namespace, f"deployment/{name}", "--timestamps",
                               "-c", names.PROXY_CONTAINER, "--tail=60")  # fmt: skip
        errors.append(f"{name}'s sidecar log:\n{logs.stdout}{logs.stderr}")
    return errors


def _tallies(cluster: clusters.Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    with cluster.api_client() as api:
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={name}")
    return [
        httpx.get(f"http://{pod.status.pod_ip}:{apps.CONTROL_PORT}/metrics", timeout=5).json()
        for pod in pods.items
        if pod.status.pod_ip
    ]


def _group(services: set[str]) -> str:
    """The name of a set of backend Services selecting one Pod: `a+b`, or `(none)`."""
    return "+".join(sorted(services)) or "(none)"


@dataclass
class Step:
    """One setting of the split: its weights, when it began, and how many requests the Pods
    of each backend answered (server side, counted at the Pod that answered, grouped by the
    backend Services whose selectors matched it then) while it held, after `SETTLE`."""

    weights: tuple[tuple[str, int], ...]
    since: float
    until: float = 0.0
    programmed: float | None = None
    """Seconds from the change being seen to the split's `Programmed` for its generation."""
    answered: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)

    def share(self, group: str) -> float:
        total = sum(self.answered.values())
        return self.answered[group] / total if total else 0.0

    def backend_shares(self) -> dict[str, float]:
        """The share of requests each weighted backend's Pods answered. A Pod selected by
        several backends (Argo points both Services at one ReplicaSet between steps)
        answered for those of them with weight, in their weights' proportion."""
        weights = dict(self.weights)
        credited: Counter[str] = Counter()
        for group, count in self.answered.items():
            members = {s: weights.get(s, 0) for s in group.split("+")}
            weight = sum(members.values())
            for service, mine in members.items():
                if weight:
                    credited[service] += count * mine / weight
        total = sum(self.answered.values())
        return {s: credited[s] / total if total else 0.0 for s, w in self.weights if w}

    def unweighted(self) -> int:
        """Requests answered by Pods no backend with weight selects (must be none)."""
        weights = dict(self.weights)
        return sum(count for group, count in self.answered.items()
                   if not any(weights.get(s, 0) for s in group.split("+")))  # fmt: skip

    def weight(self, service: str) -> int:
        return dict(self.weights).get(service, 0)

    def line(self) -> str:
        weights = " ".join(f"{s}={w}" for s, w in self.weights)
        shares = " ".join(f"{g}={self.share(g):.3f}" for g in sorted(self.answered))
        failed = sum(self.failed.values())
        programmed = "-" if self.programmed is None else f"{self.programmed:.1f}s"
        held = max(self.until - self.since, 0.0)
        return (f"{weights:<40} {held:5.1f}s (programmed {programmed:>5}) "
                f"{sum(self.answered.values()):5d} req  {shares or '-'}  5xx={failed}")  # fmt: skip


@dataclass
class Recorder:
    """Polls, every `POLL` seconds, the TrafficSplit `name` (as `version` of
    split.smi-spec.io), a phase (`phase()`), and every Running Pod's sidecar counters in
    `namespace`, in a thread, until stopped. Only requests from `source` (a workload name)
    count: the apex's callers, not a tester that calls a backend directly."""

    cluster: clusters.Cluster
    namespace: str
    name: str
    version: str
    phase: Callable[[], str | None]
    source: str = LOADER
    steps: list[Step] = field(default_factory=list)
    phases: list[tuple[float, str]] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _counting: bool = False
    """Whether the last poll already counted for the current step: a poll's counts span
    from the previous poll's scrape, so only then do they start after `Programmed`."""
    _scrapes: dict[str, dict[trafficstats.SeriesKey, trafficstats.Series]] = field(
        default_factory=dict
    )

    @contextmanager
    def recording(self) -> Iterator[Recorder]:
        thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(30)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            with self.cluster.api_client() as api:
                while not self._stop.wait(POLL):
                    self._poll(api)
        except BaseException as exc:  # surfaced by `recording`
            self.error = exc

    def _weights(
        self, api: client.ApiClient
    ) -> tuple[tuple[tuple[str, int], ...], bool] | tuple[None, bool]:
        """The split's weights (None if it does not exist), and whether smimesh reports
        them programmed."""
        try:
            found = client.CustomObjectsApi(api).get_namespaced_custom_object(
                split.GROUP, self.version, self.namespace, "trafficsplits", self.name)  # fmt: skip
        except client.ApiException as exc:
            if exc.status == 404:
                return None, False
            raise
        generation = found["metadata"].get("generation")
        programmed = any(
            c.get("type") == "Programmed" and c.get("status") == "True"
            and c.get("observedGeneration") == generation
            for c in found.get("status", {}).get("conditions", [])
        )  # fmt: skip
        weights = tuple(sorted((b["service"], int(utils.parse_quantity(b["weight"])))
                               for b in found["spec"]["backends"]))  # fmt: skip
        return weights, programmed

    def _poll(self, api: client.ApiClient) -> None:
        now = time.monotonic()
        phase = self.phase()
        if phase is not None and (not self.phases or self.phases[-1][1] != phase):
            self.phases.append((now, phase))
        # The split is read before and after the scrape: when both agree, every request the
        # scrape counts was answered under those weights (the proxies cannot apply a change
        # before the apiserver holds it); when they differ the poll's counts are dropped.
        weights, _ = self._weights(api)
        answered, failed = self._deltas(api, [s for s, _ in weights or ()])
        after, programmed = self._weights(api)
        if after is None:
            return
        if not self.steps or self.steps[-1].weights != after:
            if self.steps:
                self.steps[-1].until = now
            self.steps.append(Step(after, now))
            self._counting = False
            return
        step = self.steps[-1]
        step.until = now
        if programmed and step.programmed is None:
            step.programmed = now - step.since
        if weights != after:
            self._counting = False
            return
        if self._counting:
            step.answered.update(answered)
            step.failed.update(failed)
        self._counting = step.programmed is not None and now - step.since >= SETTLE

    def _deltas(
        self, api: client.ApiClient, backends: list[str]
    ) -> tuple[Counter[str], Counter[str]]:
        """Requests from `source` each Pod answered (and failed) since the last poll, by the
        backend Services selecting the Pod now."""
        core = client.CoreV1Api(api)
        selectors = {}
        for service in core.list_namespaced_service(self.namespace).items:
            if service.metadata.name in backends and service.spec.selector:
                selectors[service.metadata.name] = service.spec.selector
        answered: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for pod in core.list_namespaced_pod(self.namespace).items:
            if pod.status.phase != "Running" or not pod.status.pod_ip:
                continue
            url = f"http://{pod.status.pod_ip}:{names.SIDECAR_METRICS_PORT}/metrics"
            try:
                scrape = trafficstats.parse(httpx.get(url, timeout=2).text)
            except httpx.HTTPError:
                continue  # not up yet, or gone: its requests are counted from its next scrape
            before = self._scrapes.get(pod.metadata.name)
            self._scrapes[pod.metadata.name] = scrape
            if before is None:
                continue  # first sight: its counts so far belong to no step we measure
            labels = pod.metadata.labels or {}
            group = _group({name for name, selector in selectors.items()
                            if all(labels.get(k) == v for k, v in selector.items())})  # fmt: skip
            for key, series in trafficstats.delta(before, scrape).items():
                if key.side == "server" and key.source.name == self.source:
                    answered[group] += int(series.requests)
                    if key.failed:
                        failed[group] += int(series.requests)
        return answered, failed


Z = 4.0
"""How far a step's share may stray from its weight, in binomial standard deviations of a
share of that many requests: a false alarm about once in 16,000 checks."""


def assert_shares(steps: list[Step], *, at_least: int = 40) -> None:
    """Every step that saw `at_least` requests gave each backend with weight its share
    within `Z` standard deviations (`Step.backend_shares`; ± 0.16 at 120 requests and a
    weight of 25 %, ± 0.09 at 400), and Pods behind backends of weight 0 nothing at all."""
    report = "\n".join(step.line() for step in steps)
    for step in steps:
        assert step.unweighted() == 0, f"Pods of weight 0 answered:\n{report}"
        count = sum(step.answered.values())
        if count < at_least:
            continue
        total = sum(w for _, w in step.weights)
        for service, share in step.backend_shares().items():
            expected = step.weight(service) / total
            tolerance = Z * math.sqrt(expected * (1 - expected) / count)
            assert abs(share - expected) <= tolerance, (
                f"{service} {share:.3f}, not {expected:.3f} ± {tolerance:.3f}:\n{report}"
            )


SLOW_MS = 700
"""A slow release's added latency: above the guides' 500 ms p99 threshold."""


def release_env(*, bad: bool, slow: bool = False) -> list[dict[str, str]]:
    """The new release's environment: `v2`, answering half its requests with 500 if bad,
    each `SLOW_MS` late if slow."""
    env = [{"name": "SMIMESH_RELEASE", "value": "v2"}]
    if bad:
        env.append({"name": "SMIMESH_APP_FAILURES", "value": "0.5"})
    if slow:
        env.append({"name": "SMIMESH_APP_DELAY_MS", "value": str(SLOW_MS)})
    return env


def create(cluster: clusters.Cluster, namespace_: str, *objects: Object) -> None:
    """The scenario's namespace (meshed, permissive) first, so the injector sees its label
    before any Pod is admitted; then its objects."""
    nodepods.apply(cluster, namespace_, namespace(namespace_))
    nodepods.apply(cluster, namespace_, *objects)


def start_load(cluster: clusters.Cluster, namespace: str, *objects: Object) -> None:
    """Apply the load generators (and their accounts); wait until `LOADER`'s calls answer."""
    nodepods.apply(cluster, namespace, *objects)
    waiting.eventually_sync(
        lambda: loaded(cluster, namespace)["ok"] >= 20 or None,
        timeout=120, message=lambda: f"no load through the mesh in {namespace}", interval=0.5,
        ignoring=(httpx.HTTPError, ValueError, KeyError),  # the loader is starting
    )  # fmt: skip


@dataclass
class Outcome:
    """What one scenario showed: the steps and phases (`recorder`), the loader's calls from
    the change to the end (`loaded`) and in the 5 s after it (`after_end`), the release the
    stable (primary) Pods run at the end, a blue/green tester's calls, and timings."""

    name: str
    recorder: Recorder
    loaded: dict[str, int]
    after_end: dict[str, int]
    release: str
    seconds: dict[str, float]
    tested: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # `load_errors`, for the failure message

    @property
    def phases(self) -> list[str]:
        return [p for _, p in self.recorder.phases]

    def report(self) -> str:
        steps = "\n".join(f"  {s.line()}" for s in self.recorder.steps)
        return (f"{self.name}: {' → '.join(self.phases)}; "
                f"{ {k: round(v, 1) for k, v in self.seconds.items()} }; "
                f"loader {self.loaded}\n{steps}")  # fmt: skip

    def failures(self) -> str:
        """The loader's calls and, when some ended without a status, when (beside the
        phases' times) and why: an assertion's message."""
        wall = time.time() - time.monotonic()
        phases = ", ".join(
            f"{p} {datetime.datetime.fromtimestamp(wall + at, datetime.UTC):%H:%M:%S}"
            for at, p in self.recorder.phases
        )
        return "\n".join([f"{self.loaded}; phases (UTC): {phases}", *self.errors])


def observe(
    name: str,
    cluster: clusters.Cluster,
    recorder: Recorder,
    change: Callable[[], None],
    ended: Callable[[], str],
    *,
    release: Callable[[], str],
    seconds: dict[str, float],
    tester: str | None = None,
) -> Outcome:
    """Record while `change()` starts a release and `ended()` awaits the controller's verdict
    (its time is `seconds["rollout"]`); then the loader's calls until the end and in the 5 s
    after, the `release()` the stable Pods run and the `tester`'s calls. The scenario's
    namespace is deleted last: its Pods would load the node for the scenarios still
    running."""
    with recorder.recording():
        before = loaded(cluster, recorder.namespace)
        change()
        started = time.monotonic()
        end = ended()
        seconds["rollout"] = time.monotonic() - started
        if not recorder.phases or recorder.phases[-1][1] != end:  # seen by `ended` first
            recorder.phases.append((time.monotonic(), end))
        time.sleep(SETTLE * 2)  # the last step's first counted polls
        at_end = loaded(cluster, recorder.namespace)
    time.sleep(5)  # traffic after the end: every request back on the stable Pods
    after = loaded(cluster, recorder.namespace)
    outcome = Outcome(
        name, recorder,
        loaded={k: n - before.get(k, 0) for k, n in at_end.items()},
        after_end={k: n - at_end.get(k, 0) for k, n in after.items()},
        release=release(), seconds=seconds,
        tested=loaded(cluster, recorder.namespace, tester) if tester else {},
        errors=load_errors(cluster, recorder.namespace),
    )  # fmt: skip
    print(f"{name}: ended {end}")
    cluster.kubectl("delete", "namespace", recorder.namespace, "--wait=false")
    return outcome


Futures = dict[str, concurrent.futures.Future[Outcome]]
"""Scenario outcomes by case name (`all_at_once`)."""
C = TypeVar("C", bound="Named")


class Named(Protocol):
    @property
    def name(self) -> str: ...


@contextmanager
def all_at_once(run: Callable[[C], Outcome], cases: Sequence[C]) -> Iterator[Futures]:
    """Every case started at once, each in its own thread (and namespace); the futures by
    case name. Cases still running when the block ends are abandoned with their threads."""
    with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
        futures = {case.name: pool.submit(run, case) for case in cases}
        try:
            yield futures
        finally:
            for future in futures.values():
                future.cancel()


def outcome(futures: Futures, name: str, *, timeout: float) -> Outcome:
    """The named scenario's outcome (its error, if it failed), its report printed."""
    found = futures[name].result(timeout=timeout)
    print(found.report())
    return found
