"""Moved to `smimesh.telemetry.trafficstats` (the operator reads sidecar metrics too, and may
not import conformance); this alias keeps `tests/e2e/test_flagger.py` importing until it
imports the new home. Remove it then."""

from smimesh.telemetry.trafficstats import *  # noqa: F403
