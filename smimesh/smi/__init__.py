"""The SMI API: pydantic models for every released version, hub models, conversion,
semantic validation and CRD generation. Pure: imports nothing else of smimesh.
"""
