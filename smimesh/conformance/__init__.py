"""The SMI conformance suite: its test app, cases, runner and reports. Black-box: it
talks to a cluster and to sidecars, never to operator internals.
"""
