"""The storage plugin contract: a place that keeps one sealed ZIP per study.

A backend stores whole study ZIPs under the Study Instance UID and reads them back by
ranges: :class:`StudyStore <pacsnode.storage.store.StudyStore>` opens a sealed ZIP as a
:class:`SealedBlob` and reads its central directory and single entries (a frame, an
instance's metadata) without fetching the whole study. One node owns a backend's studies at
a time (as it owns its data directory), so a backend may cache what it knows of them.

Every backend passes the same contract suite (``tests/storage/backends/``). A factory,
registered as a ``pacsnode.storage`` entry point, builds one from the settings of its
``[plugins.<name>]`` table and the node's data directory.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

#: fills a ZIP being written: the study's whole content, written sequentially
Filler = Callable[[BinaryIO], None]


@runtime_checkable
class SealedBlob(Protocol):
    """One sealed study ZIP opened for reading: a seekable binary file (what ``zipfile``
    needs) that also reads at an offset without moving its position (safe across threads).

    It keeps reading the version it opened, even if the study is replaced meanwhile
    (a local file by rename, an object by its ETag)."""

    name: str

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...

    def seekable(self) -> bool: ...

    def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...

    def pread(self, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer only at the end of the ZIP)."""
        ...

    def reopen(self) -> SealedBlob:
        """Another handle on the same version, with its own position."""
        ...


@runtime_checkable
class SealedBackend(Protocol):
    """Keeps the sealed study ZIPs. Methods are called from many threads at once, but never
    two writes (``put``, ``delete``) of the same study at once: the store locks the study.

    Every method taking a ``study_uid`` checks it (:func:`~pacsnode.storage.layout.check_uid`)
    and raises :class:`~pacsnode.storage.errors.InvalidUid` for one that is not a DICOM UID,
    before it becomes a path or a key. A backend that cannot reach its storage raises
    :class:`~pacsnode.storage.errors.BackendUnavailable` (and changes nothing)."""

    #: the plugin's name, for messages
    name: str

    def open(self) -> None:
        """Get ready (and clean up what a crash of a ``put`` left); called once at start."""
        ...

    def close(self) -> None: ...

    def put(self, study_uid: str, fill: Filler) -> None:
        """Make the ZIP that ``fill`` writes the study's, replacing any other, durably:
        once this returns it survives a crash; if it raises, the old ZIP is intact.
        A full destination raises :class:`~pacsnode.storage.errors.StorageFull`."""
        ...

    def get(self, study_uid: str) -> SealedBlob:
        """The study's ZIP, opened for reading; ``FileNotFoundError`` when there is none."""
        ...

    def read_range(self, study_uid: str, offset: int, size: int) -> bytes:
        """``size`` bytes of the study's ZIP at ``offset`` (fewer at its end);
        ``FileNotFoundError`` when there is none."""
        ...

    def version(self, study_uid: str) -> Hashable | None:
        """A value that changes whenever the study's ZIP is replaced; ``None`` when there is
        none. Asked on every read of a sealed instance, so it must be cheap."""
        ...

    def size(self, study_uid: str) -> int | None:
        """The ZIP's size in bytes; ``None`` when there is none."""
        ...

    def delete(self, study_uid: str) -> bool:
        """Remove the study's ZIP durably; whether there was one."""
        ...

    def study_uids(self) -> Iterator[str]:
        """Every study that has a sealed ZIP, in no particular order."""
        ...


class BackendFactory(Protocol):
    """What a ``pacsnode.storage`` entry point names: settings and data dir to a backend.
    Bad settings raise ``ValueError`` with a message for the operator."""

    def __call__(self, settings: Mapping[str, Any], data_dir: Path) -> SealedBackend: ...
