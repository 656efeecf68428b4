"""The smimesh image built here without a Docker daemon, from the repository's Dockerfile.

`dockerfile` parses the recipe, `bases` makes Debian bases with mmdebstrap, `sandboxing`
runs each RUN chrooted in its own namespaces, `packing` writes the OCI layout with umoci,
`building` follows the stages and caches the result by its inputs; `__main__` is the CLI
behind `make image` (docs/image.md). Used by tests/testing/meshimage/, which run the image
under runc.
"""
