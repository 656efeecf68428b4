"""The injector's one error: a pod that cannot be injected as written.

Raised by `decisions`, `iptables` and `injecting`; the webhook turns it into a denied admission
with the message, `kubectl smi inject` into exit status 1.
"""

from __future__ import annotations


class InjectionError(ValueError):
    """The pod cannot be injected as written (a bad annotation, a port the proxy needs)."""
