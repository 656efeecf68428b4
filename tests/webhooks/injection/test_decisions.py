"""Who gets a sidecar: namespace label or pod annotation opts in, the pod's opt-out wins."""

from __future__ import annotations

import pytest

from smimesh.webhooks.injection import decisions, errors, settings

from .pods import annotated, app_pod

pytestmark = pytest.mark.fast

CONFIG = settings.InjectionSettings()
ENABLED_NS = {"smimesh.dev/inject": "enabled"}


def _decide(
    pod: dict[str, object],
    labels: dict[str, str],
    *,
    namespace: str = "shop",
    enabled_by_default: bool = False,
) -> decisions.Decision:
    return decisions.decide(
        pod,
        namespace=namespace,
        namespace_labels=labels,
        config=CONFIG,
        enabled_by_default=enabled_by_default,
    )


def test_a_pod_in_a_labelled_namespace_is_injected() -> None:
    assert _decide(app_pod(), ENABLED_NS) == decisions.Decision(
        True, "enabled", "namespace label smimesh.dev/inject=enabled"
    )


def test_an_annotated_pod_is_injected_without_a_namespace_label() -> None:
    assert _decide(annotated(app_pod(), **{"smimesh.dev/inject": "enabled"}), {}).inject


def test_a_pod_annotation_overrides_a_disabled_namespace() -> None:
    pod = annotated(app_pod(), **{"smimesh.dev/inject": "enabled"})
    assert _decide(pod, {"smimesh.dev/inject": "disabled"}).inject


def test_the_opt_out_annotation_wins_over_the_namespace_label() -> None:
    decision = _decide(annotated(app_pod(), **{"smimesh.dev/inject": "disabled"}), ENABLED_NS)
    assert (decision.inject, decision.reason) == (False, "opted-out")


def test_the_opt_out_annotation_wins_over_an_explicit_request() -> None:
    pod = annotated(app_pod(), **{"smimesh.dev/inject": "disabled"})
    assert _decide(pod, {}, enabled_by_default=True).reason == "opted-out"


def test_host_network_pods_are_skipped_even_when_asked_for() -> None:
    pod = annotated(app_pod(hostNetwork=True), **{"smimesh.dev/inject": "enabled"})
    assert _decide(pod, ENABLED_NS).reason == "host-network"


def test_the_mesh_namespace_is_never_injected() -> None:
    decision = _decide(app_pod(), ENABLED_NS, namespace="smimesh-system")
    assert (decision.inject, decision.reason) == (False, "mesh-namespace")


def test_an_injected_pod_is_not_injected_again() -> None:
    pod = annotated(app_pod(), **{"smimesh.dev/injected": "ghcr.io/smimesh/proxy:0.1.0"})
    assert _decide(pod, ENABLED_NS).reason == "already-injected"


def test_without_label_or_annotation_nothing_happens() -> None:
    assert _decide(app_pod(), {}).reason == "not-enabled"


def test_a_disabled_namespace_is_respected_even_by_an_explicit_request() -> None:
    assert not _decide(
        app_pod(), {"smimesh.dev/inject": "disabled"}, enabled_by_default=True
    ).inject


@pytest.mark.parametrize("value", ["true", "Enabled", ""])
def test_an_unknown_annotation_value_is_an_error_that_names_the_choices(value: str) -> None:
    with pytest.raises(errors.InjectionError, match="use 'enabled' or 'disabled'"):
        _decide(annotated(app_pod(), **{"smimesh.dev/inject": value}), ENABLED_NS)


@pytest.mark.parametrize(
    ("version", "native"),
    [("v1.36.3", True), ("v1.29.0", True), ("1.29+", True), ("v1.28.9-gke.1", False)],
)
def test_native_sidecars_from_kubernetes_1_29(version: str, native: bool) -> None:
    assert settings.supports_native_sidecars(version) is native


def test_a_version_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        settings.supports_native_sidecars("latest")


def test_settings_refuse_a_token_kubernetes_would_refuse() -> None:
    with pytest.raises(ValueError, match="at least 600"):
        settings.InjectionSettings(token_expiration_seconds=60)
