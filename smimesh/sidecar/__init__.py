"""The data-plane proxy: listener -> filter chain -> route -> cluster -> endpoint,
driven by a proxyconfig snapshot swapped atomically.
"""
