"""A plugin module that fails to import, as a plugin with a missing dependency would."""

from __future__ import annotations

raise RuntimeError("the example-broken plugin is broken on purpose")
