"""Where sealed study ZIPs are kept: the storage plugins (``pacsnode.storage`` entry points).

:mod:`.base` says what a backend does; :mod:`.local` keeps them on the data disk (the
default). Staging, pending markers and recovery stay on the local data disk whatever the
backend: only sealed ZIPs move.
"""
