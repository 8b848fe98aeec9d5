"""What a node is configured with: plain, frozen settings, built by :mod:`.config`.

Everything here is a value; reading and checking the TOML file is
:func:`pacsnode.node.config.load_config`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pacsnode.node.recycling import Limits, StorageMode
from pacsnode.storage.limits import ArchiveLimits

_MB = 1024 * 1024


class ConflictPolicy(StrEnum):
    """What to do with a second, different instance under a known SOP Instance UID."""

    KEEP = "keep"  # keep the first, report the conflict (default)
    OVERWRITE = "overwrite"
    REJECT = "reject"


@dataclass(frozen=True)
class SearchSettings:
    """Search over every attribute (``POST /tools/search``), fed from the change feed."""

    enabled: bool = True
    #: the most seconds an indexed instance waits before searches see it (a commit of
    #: the search index costs a sync to disk: one a second, not one per instance)
    commit_interval_s: float = 1.0


@dataclass(frozen=True)
class PluginSettings:
    """Which plugins the node loads (:mod:`pacsnode.node.plugins`) and their settings."""

    #: the ``pacsnode.storage`` entry point that keeps sealed study ZIPs
    storage_backend: str = "local"
    #: ``pacsnode.index`` entry points beyond the built-in ones
    index: tuple[str, ...] = ()
    #: ``pacsnode.web`` entry points, each mounted under ``/plugins/{name}/``
    web: tuple[str, ...] = ()
    #: ``[plugins.NAME]`` tables, as written
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def settings_of(self, name: str) -> dict[str, Any]:
        return self.settings.get(name, {})


@dataclass(frozen=True)
class CoreSettings:
    data_dir: Path
    compression: bool = True
    compression_level: int = 3
    stable_age_s: float = 60.0
    maximum_storage_size_mb: int = 0
    maximum_patient_count: int = 0
    maximum_storage_mode: StorageMode = StorageMode.RECYCLE
    conflict_policy: ConflictPolicy = ConflictPolicy.KEEP
    #: the largest instance a ZIP (an upload's or a peer's) may inflate to
    max_instance_size_mb: int = 2048
    #: the largest study metadata a peer's ZIP may inflate to
    max_metadata_size_mb: int = 256
    #: inflated per compressed byte, for ZIP entries past 16 MiB (deflate's most is ~1032)
    max_compression_ratio: int = 200
    #: processes that parse instances arriving at once (None: one less than the cores)
    ingest_workers: int | None = None
    #: acknowledge an instance before converting it, and convert it in the background
    background_conversion: bool = True
    metadata_names: dict[str, int] = field(default_factory=dict)
    #: symbolic name -> (content type >= 1024, MIME type)
    attachment_types: dict[str, tuple[int, str]] = field(default_factory=dict)
    search: SearchSettings = SearchSettings()
    plugins: PluginSettings = PluginSettings()

    @property
    def archive_limits(self) -> ArchiveLimits:
        return ArchiveLimits(
            self.max_instance_size_mb * _MB, self.max_metadata_size_mb * _MB,
            self.max_compression_ratio,
        )  # fmt: skip

    @property
    def limits(self) -> Limits:
        return Limits(
            self.maximum_storage_size_mb * _MB,
            self.maximum_patient_count,
            self.maximum_storage_mode,
        )


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8042
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: changing or deleting metadata and attachments needs If-Match (Orthanc's CheckRevisions)
    check_revisions: bool = False
    #: REST connections open at once (more are refused; at most half the open-file limit)
    max_connections: int = 1000
    #: seconds a client has to send a whole request head (slow-loris defence)
    request_head_timeout_s: float = 20.0
    #: seconds a request body may stall: no byte arrives while the node waits for one
    request_body_timeout_s: float = 60.0
    #: seconds an idle keep-alive connection stays open
    keepalive_timeout_s: float = 15.0
    #: the largest request body in MiB (413 beyond)
    max_request_size_mb: int = 4096
    #: the most entries one /changes or /exports page gives, whatever ``limit`` asks
    max_changes_limit: int = 10000

    @property
    def max_request_bytes(self) -> int:
        return self.max_request_size_mb * _MB


@dataclass(frozen=True)
class DicomSettings:
    aet: str = "PACSNODE"
    host: str = "127.0.0.1"
    port: int = 4242
    accept_unknown_callers: bool = True
    #: Orthanc's DefaultEncoding: files without a character set, and C-FIND answers
    default_encoding: str = "Latin1"
    #: with accept_unknown_callers false, anyone may still C-ECHO and C-STORE; only
    #: queries and retrieves stay limited to the modalities (Orthanc's DicomAlwaysAllowStore)
    always_allow_store: bool = False
    #: refuse an association whose called AE title is not ``aet`` (config: on beyond loopback)
    check_called_aet: bool = False
    #: a modality's AE title counts only from its configured host (config: on beyond loopback)
    check_caller_host: bool = False
    #: connections at once (negotiated or not); one more is closed at once
    max_associations: int = 32
    #: connections at once from one source address
    max_associations_per_host: int = 8
    #: of ``max_associations``, kept for the configured modalities' addresses
    reserved_for_modalities: int = 8
    #: seconds a new connection has to send its A-ASSOCIATE-RQ
    association_request_timeout_s: float = 5.0


@dataclass(frozen=True)
class AuditSettings:
    """The audit log (JSON lines): who did what, from where, to which resource."""

    enabled: bool = True
    #: the log file; None: ``data_dir/audit/audit.log``
    path: Path | None = None
    max_size_mb: int = 100
    #: rotated files kept besides the current one
    backup_count: int = 10
    #: patient ids as a keyed hash (the key is ``data_dir/audit.key``), not in clear
    hash_patient_ids: bool = True


@dataclass(frozen=True)
class DicomWebSettings:
    """The DICOMweb service (QIDO-RS, WADO-RS, STOW-RS), under ``root`` of the REST server."""

    enabled: bool = True
    root: str = "/dicom-web"
    #: origins a browser may call it from (CORS); empty: same origin only, ``"*"``: any
    cors_origins: tuple[str, ...] = ()


class Role(StrEnum):
    """What a REST user may do; each role can do what the ones before it can."""

    READ_ONLY = "read-only"  # look, query, download
    READ_WRITE = "read-write"  # and store, annotate, send to configured modalities/peers
    ADMIN = "admin"  # and delete, change modalities, peers, settings

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str
    role: Role = Role.ADMIN  # the configuration file's default is decided in config.py


@dataclass(frozen=True)
class Modality:
    name: str
    aet: str
    host: str
    port: int
    #: the AE title pacsnode calls it with (Orthanc's LocalAet); empty: the node's own
    local_aet: str = ""
    #: Orthanc's manufacturer quirks name (kept and shown; pacsnode speaks plain DICOM)
    manufacturer: str = "Generic"


@dataclass(frozen=True)
class FindSettings:
    """Caps on query answers (Orthanc's LimitFindResults / LimitFindInstances); 0: none."""

    limit_results: int = 0
    limit_instances: int = 0

    def cap(self, instance_level: bool) -> int | None:
        """The most answers a query at that level gives when it asks no limit itself."""
        return (self.limit_instances if instance_level else self.limit_results) or None


@dataclass(frozen=True)
class PrivateTag:
    """A private attribute for the dictionary (Orthanc's ``Dictionary``): its VR and
    name, under its private creator, so files without VRs read and show it right."""

    tag: int  # group << 16 | element, the element's low byte is what the creator reserves
    vr: str
    name: str
    creator: str


@dataclass(frozen=True)
class PeeringSettings:
    host: str = "127.0.0.1"
    port: int = 8443
    shared_ca: Path | None = None
    #: the largest upload a peer may declare: one study's missing instances as one ZIP
    max_upload_mb: int = 16384
    #: a spooled upload or export untouched this long is abandoned and removed
    spool_idle_s: int = 1800
    #: uploads in progress (and prepared exports) one peer may hold at once
    max_transfers_per_peer: int = 4


@dataclass(frozen=True)
class PeerSettings:
    name: str
    fingerprint: str = ""  # a pacsnode peer's pinned certificate (required for that kind)
    url: str | None = None  # None: a passive peer, which dials us
    push: bool = True
    pull: bool = True
    interval_s: int = 0  # 0: only when asked (POST /peers/{name}/sync)
    schedule: str | None = None  # a cron expression, instead of interval_s
    window: str | None = None  # "20:00-06:00": scheduled syncs only inside it
    filter: dict[str, str] | None = None  # /tools/find keywords: only matching studies
    bandwidth_kbps: int = 0  # 0: unlimited
    mirror_deletions: bool = False  # a user's deletions are applied on both sides
    kind: str = "pacsnode"  # or "orthanc": its REST API, with HTTP Basic credentials
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None  # an Orthanc peer's CA, for https
    remote_self: str = ""  # Orthanc's RemoteSelf: the name the peer knows us by


@dataclass(frozen=True)
class NodeConfig:
    core: CoreSettings
    http: HttpSettings
    dicom: DicomSettings
    users: tuple[User, ...] = ()
    modalities: tuple[Modality, ...] = ()
    source: str = "embedded defaults"
    peering: PeeringSettings = PeeringSettings()
    peers: tuple[PeerSettings, ...] = ()
    find: FindSettings = FindSettings()
    private_tags: tuple[PrivateTag, ...] = ()
    dicomweb: DicomWebSettings = DicomWebSettings()
    audit: AuditSettings = AuditSettings()

    @property
    def data_dir(self) -> Path:
        return self.core.data_dir


def peer_problem(peer: PeerSettings) -> str | None:
    """What is wrong with a peer's settings for its kind, or ``None``."""
    if peer.kind == "orthanc":
        if not peer.url or not peer.url.startswith(("http://", "https://")):
            return 'an Orthanc peer needs url = "http(s)://host:port"'
        if peer.mirror_deletions:
            return "deletions are not mirrored with Orthanc peers"
        return None
    if peer.kind != "pacsnode":
        return 'kind must be "pacsnode" or "orthanc"'
    if not peer.fingerprint:
        return "a pacsnode peer needs the fingerprint its `pacsnode identity` prints"
    if peer.url is not None and not peer.url.startswith("https://"):
        return "url must start with https://"
    return None
