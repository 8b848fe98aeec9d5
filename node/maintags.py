"""TEMPORARY re-exports for edges being converted to NodeCore's named methods."""

from pacsnode.node.index.maintags import MAIN_TAGS

__all__ = ["MAIN_TAGS"]
