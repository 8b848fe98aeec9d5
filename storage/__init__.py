"""The on-disk truth of a node: archive-direct study ZIPs and attachment blobs.

This package imports neither ``node`` nor ``peer``.
"""
