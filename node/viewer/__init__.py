"""The OHIF Viewer, served by the node under ``/viewer/`` once ``pacsnode viewer install``
has fetched it (nothing of OHIF is in the repository or the wheel).

``install`` fetches and prepares a release; ``routes`` serves it.
"""

from __future__ import annotations

from pathlib import Path

from pacsnode.node.settings import NodeConfig
from pacsnode.storage.errors import DomainError, NotFound

#: where the viewer answers; OHIF's router and asset URLs are rewritten to it at install
BASE_PATH = "/viewer/"


def viewer_dir(config: NodeConfig) -> Path:
    """The installed viewer's directory: beside the studies, so one data directory is the
    whole node."""
    return config.data_dir / "viewer"


class ViewerNotInstalled(NotFound):
    """``/viewer/`` was asked for, and no viewer is installed."""

    code = "viewer-not-installed"


class ViewerInstallError(DomainError):
    """The release could not be fetched, verified or prepared; nothing was changed."""

    code = "viewer-install-failed"
    http_status = 502
