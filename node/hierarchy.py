"""TEMPORARY re-exports for edges being converted to NodeCore's named methods."""

from pacsnode.node.index.hierarchy import LOOKUP_KEYWORDS, instances_under
from pacsnode.node.index.records import Origin

__all__ = ["LOOKUP_KEYWORDS", "Origin", "instances_under"]
