"""The control plane: kopf handlers and indexes feed the mesh model, the compiler turns
it into proxy configs, the config server pushes them to sidecars; status, events and leader
election live here too. Launch with `python -m smimesh.operator`.
"""
