"""Compiles the mesh model (cluster state and SMI hub objects) into one proxy config per
proxy. Pure: no I/O, no clock; deterministic output.
"""
