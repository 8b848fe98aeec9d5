"""TEMPORARY re-exports for edges being converted to NodeCore's named methods."""

from pacsnode.node.index.lookups import tags_with_ancestors

__all__ = ["tags_with_ancestors"]
