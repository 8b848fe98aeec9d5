"""``[storage]``'s limits on received ZIPs: their defaults, a file changing them, and the
ranges refused at start (issue 13, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsnode.node.config import load_config
from pacsnode.node.errors import ConfigError
from pacsnode.storage.limits import ArchiveLimits

MiB = 1 << 20


def test_defaults_are_the_storage_layers() -> None:
    assert load_config(None).core.archive_limits == ArchiveLimits()
    assert ArchiveLimits() == ArchiveLimits(2048 * MiB, 256 * MiB, 200)


def test_a_file_changes_them_within_their_ranges(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    limits = ["max_instance_size_mb = 8", "max_metadata_size_mb = 4", "max_compression_ratio = 50"]
    path.write_text("\n".join(["[storage]", *limits, ""]))
    assert load_config(path).core.archive_limits == ArchiveLimits(8 * MiB, 4 * MiB, 50)
    out_of_range = ["max_instance_size_mb = 0", "max_compression_ratio = 1"]
    for bad in [*out_of_range, "max_metadata_size_mb = -1"]:
        path.write_text(f"[storage]\n{bad}\n")
        with pytest.raises(ConfigError, match=bad.split()[0]):
            load_config(path)
