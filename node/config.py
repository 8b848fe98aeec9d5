"""The node's configuration: one TOML file over the embedded defaults, validated at start.

Every error names the file and the key; the settings it builds are in
:mod:`.settings`. ``configs/default.toml`` holds the
defaults; a user's file only needs the keys it changes.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from pacsnode.node.encodings import check_encoding
from pacsnode.node.errors import ConfigError, DomainError
from pacsnode.node.query import parse_query
from pacsnode.node.recycling import StorageMode
from pacsnode.node.settings import (
    AuditSettings,
    ConflictPolicy,
    CoreSettings,
    DicomSettings,
    DicomWebSettings,
    FindSettings,
    HttpSettings,
    Modality,
    NodeConfig,
    PeeringSettings,
    PeerSettings,
    PluginSettings,
    PrivateTag,
    Role,
    SearchSettings,
    User,
    peer_problem,
)

# section -> key -> accepted types; "[[users]]" and "[[modalities]]" are lists of tables
_SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "": {"data_dir": (str,)},
    "http": {
        "host": (str,),
        "port": (int,),
        "tls_cert": (str,),
        "tls_key": (str,),
        "check_revisions": (bool,),
        "max_connections": (int,),
        "request_head_timeout_s": (int, float),
        "request_body_timeout_s": (int, float),
        "keepalive_timeout_s": (int, float),
        "max_request_size_mb": (int,),
        "max_changes_limit": (int,),
    },
    "dicom": {
        "aet": (str,),
        "host": (str,),
        "port": (int,),
        "accept_unknown_callers": (bool,),
        "always_allow_store": (bool,),
        "default_encoding": (str,),
        "check_called_aet": (bool,),
        "check_caller_host": (bool,),
        "max_associations": (int,),
        "max_associations_per_host": (int,),
        "reserved_for_modalities": (int,),
        "association_request_timeout_s": (int, float),
    },
    "audit": {
        "enabled": (bool,),
        "path": (str,),
        "max_size_mb": (int,),
        "backup_count": (int,),
        "hash_patient_ids": (bool,),
    },
    "storage": {
        "compression": (bool,),
        "compression_level": (int,),
        "stable_age_s": (int, float),
        "maximum_storage_size_mb": (int,),
        "maximum_patient_count": (int,),
        "maximum_storage_mode": (str,),
        "conflict_policy": (str,),
        "max_instance_size_mb": (int,),
        "max_metadata_size_mb": (int,),
        "max_compression_ratio": (int,),
        "ingest_workers": (int, str),
        "background_conversion": (bool,),
        "backend": (str,),
    },
    "index": {"plugins": (list,)},
    "web": {"plugins": (list,)},
    "users": {"name": (str,), "password_hash": (str,), "role": (str,)},
    "modalities": {
        "name": (str,),
        "aet": (str,),
        "host": (str,),
        "port": (int,),
        "local_aet": (str,),
        "manufacturer": (str,),
    },
    "find": {"limit_results": (int,), "limit_instances": (int,)},
    "dicomweb": {"enabled": (bool,), "root": (str,), "cors_origins": (list,)},
    "search": {"enabled": (bool,), "commit_interval_s": (int, float)},
    "private_tags": {"tag": (str,), "vr": (str,), "name": (str,), "creator": (str,)},
    "peering": {
        "host": (str,),
        "port": (int,),
        "shared_ca": (str,),
        "max_upload_mb": (int,),
        "spool_idle_s": (int,),
        "max_transfers_per_peer": (int,),
    },
    "peers": {
        "name": (str,),
        "fingerprint": (str,),
        "url": (str,),
        "push": (bool,),
        "pull": (bool,),
        "interval_s": (int,),
        "schedule": (str,),
        "window": (str,),
        "filter": (dict,),
        "bandwidth_kbps": (int,),
        "mirror_deletions": (bool,),
        "kind": (str,),
        "username": (str,),
        "password": (str,),
        "ca_file": (str,),
        "remote_self": (str,),
    },
}
_REQUIRED = {
    "users": {"name", "password_hash"},
    "modalities": {"name", "aet", "host", "port"},
    "private_tags": {"tag", "vr", "name", "creator"},
    "peers": {"name"},
}
_TABLES = {
    "http",
    "dicom",
    "storage",
    "metadata",
    "attachments",
    "peering",
    "find",
    "dicomweb",
    "audit",
    "search",
    "index",
    "web",
    "plugins",
}
_LISTS = {"users", "modalities", "peers", "private_tags"}


def default_config_text() -> str:
    return resources.files("pacsnode.configs").joinpath("default.toml").read_text(encoding="utf-8")


def load_config(path: Path | None = None) -> NodeConfig:
    """Read ``path`` (or only the defaults) and return a validated configuration."""
    merged = tomllib.loads(default_config_text())
    source, base = "embedded defaults", Path.cwd()
    if path is not None:
        source, base = str(path), path.resolve().parent
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from exc
        try:
            overrides = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        for key, value in overrides.items():
            if key in _TABLES and isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return _build(merged, source, base)


def _check(source: str, section: str, table: dict[str, Any]) -> None:
    schema = _SCHEMA[section]
    for key, value in table.items():
        name = f"{section}.{key}" if section else key
        if key not in schema:
            if section == "" and key in _TABLES | _LISTS:
                continue
            raise ConfigError(f"{source}: unknown key '{name}'")
        types = schema[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{source}: '{name}' must be {wanted}, not {value!r}")


def _table(source: str, merged: dict[str, Any], section: str) -> dict[str, Any]:
    table = merged.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: '{section}' must be a table")
    if section in _SCHEMA:
        _check(source, section, table)
    return table


def _archive_limits(source: str, storage: dict[str, Any]) -> dict[str, int]:
    """How far a received ZIP may inflate (``storage.limits.ArchiveLimits``)."""
    ranges = {
        "max_instance_size_mb": (1, 1 << 20),
        "max_metadata_size_mb": (1, 1 << 16),
        "max_compression_ratio": (2, 1 << 20),
    }
    return {
        key: _ranged(source, f"storage.{key}", storage[key], low, high)
        for key, (low, high) in ranges.items()
    }


def _ingest_workers(source: str, value: int | str) -> int | None:
    """A number of worker processes (0: none), or "auto" (``None``: one less than the cores)."""
    if value == "auto":
        return None
    if isinstance(value, str):
        raise ConfigError(f"{source}: 'storage.ingest_workers' must be \"auto\" or a number")
    return int(_ranged(source, "storage.ingest_workers", value, 0, 64))


def _port(source: str, name: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{source}: '{name}' must be a port number 1..65535")
    return value


def _build(merged: dict[str, Any], source: str, base: Path) -> NodeConfig:
    _check(source, "", merged)
    http = _table(source, merged, "http")
    dicom = _table(source, merged, "dicom")
    storage = _table(source, merged, "storage")
    users = _users(source, merged.get("users", []))
    modalities = tuple(
        Modality(**_entry(source, "modalities", m)) for m in merged.get("modalities", [])
    )
    data_dir = Path(merged.get("data_dir", "pacsnode-data"))
    core = CoreSettings(
        data_dir=data_dir if data_dir.is_absolute() else base / data_dir,
        compression=storage["compression"],
        compression_level=_ranged(
            source, "storage.compression_level", storage["compression_level"], 1, 9
        ),
        stable_age_s=float(
            _ranged(source, "storage.stable_age_s", storage["stable_age_s"], 0, 86400)
        ),
        maximum_storage_size_mb=_ranged(
            source,
            "storage.maximum_storage_size_mb",
            storage["maximum_storage_size_mb"],
            0,
            1 << 40,
        ),
        maximum_patient_count=_ranged(
            source, "storage.maximum_patient_count", storage["maximum_patient_count"], 0, 1 << 40
        ),
        maximum_storage_mode=_choice(
            source, "storage.maximum_storage_mode", storage["maximum_storage_mode"], StorageMode
        ),
        conflict_policy=_choice(
            source, "storage.conflict_policy", storage["conflict_policy"], ConflictPolicy
        ),
        **_archive_limits(source, storage),
        ingest_workers=_ingest_workers(source, storage["ingest_workers"]),
        background_conversion=storage["background_conversion"],
        metadata_names=_metadata_names(source, _table(source, merged, "metadata")),
        attachment_types=_attachment_types(source, _table(source, merged, "attachments")),
        search=_search(source, _table(source, merged, "search")),
        plugins=_plugins(source, storage, merged),
    )
    config = NodeConfig(
        core=core,
        http=HttpSettings(
            http["host"],
            _port(source, "http.port", http["port"]),
            _path(base, http.get("tls_cert")),
            _path(base, http.get("tls_key")),
            http.get("check_revisions", False),
            **_http_limits(source, http),
        ),
        dicom=DicomSettings(
            _aet(source, dicom["aet"]),
            dicom["host"],
            _port(source, "dicom.port", dicom["port"]),
            # beyond loopback DICOM defaults to known callers only, from their hosts
            dicom.get("accept_unknown_callers", is_loopback(dicom["host"])),
            _encoding(source, dicom["default_encoding"]),
            always_allow_store=dicom["always_allow_store"],
            **_dicom_guards(source, dicom),
        ),
        users=users,
        modalities=modalities,
        source=source,
        peering=_peering(source, base, _table(source, merged, "peering")),
        peers=tuple(_peer(source, p) for p in merged.get("peers", [])),
        find=_find(source, _table(source, merged, "find")),
        private_tags=tuple(_private_tag(source, t) for t in merged.get("private_tags", [])),
        dicomweb=_dicomweb(source, _table(source, merged, "dicomweb")),
        audit=_audit(source, base, _table(source, merged, "audit")),
    )
    _check_secure(config)
    return config


def _users(source: str, entries: list[Any]) -> tuple[User, ...]:
    """``[[users]]`` with their roles. A lone user without ``role`` is the admin (configs
    written before roles keep working: nobody else could administer the node); with several
    users each must say its role, so adding a user never silently makes it an admin."""
    tables = [_entry(source, "users", entry) for entry in entries]
    users = []
    for table in tables:
        role = table.get("role")
        if role is None and len(tables) > 1:
            raise ConfigError(
                f"{source}: [[users]] '{table['name']}' needs a role "
                '("read-only", "read-write" or "admin") when there are several users'
            )
        chosen = Role.ADMIN if role is None else _choice(source, "users.role", role, Role)
        users.append(User(table["name"], table["password_hash"], chosen))
    return tuple(users)


def _http_limits(source: str, http: dict[str, Any]) -> dict[str, Any]:
    """The REST server's connection and request limits (see configs/default.toml)."""
    limits: dict[str, Any] = {}
    for key, low, high in (
        ("max_connections", 1, 1 << 20),
        ("request_head_timeout_s", 1, 3600),
        ("request_body_timeout_s", 1, 86400),
        ("keepalive_timeout_s", 1, 3600),
        ("max_request_size_mb", 1, 1 << 30),
        ("max_changes_limit", 1, 1 << 31),
    ):
        if key in http:
            limits[key] = _ranged(source, f"http.{key}", http[key], low, high)
    return limits


def _dicom_guards(source: str, dicom: dict[str, Any]) -> dict[str, Any]:
    """Who may associate and how many at once (issue 13, items 1 and 5). The caller and
    called AE title checks default to on when DICOM listens beyond loopback."""
    exposed = not is_loopback(dicom["host"])
    guards: dict[str, Any] = {
        "check_called_aet": dicom.get("check_called_aet", exposed),
        "check_caller_host": dicom.get("check_caller_host", exposed),
    }
    for key, low, high in (
        ("max_associations", 1, 4096),
        ("max_associations_per_host", 1, 4096),
        ("reserved_for_modalities", 0, 4095),
        ("association_request_timeout_s", 1, 300),
    ):
        if key in dicom:
            guards[key] = _ranged(source, f"dicom.{key}", dicom[key], low, high)
    if guards.get("reserved_for_modalities", 8) >= guards.get("max_associations", 32):
        raise ConfigError(
            f"{source}: 'dicom.reserved_for_modalities' must be below 'dicom.max_associations'"
        )
    return guards


def _audit(source: str, base: Path, table: dict[str, Any]) -> AuditSettings:
    return AuditSettings(
        enabled=table.get("enabled", True),
        path=_path(base, table.get("path") or None),
        max_size_mb=_ranged(source, "audit.max_size_mb", table.get("max_size_mb", 100), 1, 1 << 20),
        backup_count=_ranged(source, "audit.backup_count", table.get("backup_count", 10), 0, 1000),
        hash_patient_ids=table.get("hash_patient_ids", True),
    )


_PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _plugin_names(source: str, key: str, value: Any) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    for name in values:
        if not isinstance(name, str) or not _PLUGIN_NAME.fullmatch(name):
            raise ConfigError(
                f"{source}: '{key}' takes plugin names (entry point names), not {name!r}"
            )
    if len(set(values)) != len(values):
        raise ConfigError(f"{source}: '{key}' names a plugin twice")
    return tuple(values)


#: index plugins the node runs by itself, not named in ``[index] plugins``
_BUILT_IN_INDEXES = {
    "maintags": "the main tags are always indexed",
    "search": "[search] enabled turns it on or off",
}


def _plugins(source: str, storage: dict[str, Any], merged: dict[str, Any]) -> PluginSettings:
    """Which plugins to load; ``[plugins.NAME]`` tables are checked by the plugins."""
    settings = merged.get("plugins", {})
    if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
        raise ConfigError(f"{source}: 'plugins' must hold tables, such as [plugins.s3]")
    index = _plugin_names(source, "index.plugins", _table(source, merged, "index")["plugins"])
    built_in = [name for name in index if name in _BUILT_IN_INDEXES]
    if built_in:
        name = built_in[0]
        raise ConfigError(
            f"{source}: 'index.plugins': {name!r} is built in ({_BUILT_IN_INDEXES[name]})"
        )
    return PluginSettings(
        storage_backend=_plugin_names(source, "storage.backend", storage["backend"])[0],
        index=index,
        web=_plugin_names(source, "web.plugins", _table(source, merged, "web")["plugins"]),
        settings={name: dict(table) for name, table in settings.items()},
    )


def _search(source: str, table: dict[str, Any]) -> SearchSettings:
    interval = table.get("commit_interval_s", 1.0)
    return SearchSettings(
        enabled=table.get("enabled", True),
        commit_interval_s=float(_ranged(source, "search.commit_interval_s", interval, 0, 3600)),
    )


def _peer(source: str, table: Any) -> PeerSettings:
    # Loaded only for peers: a node without any never imports the scheduler.
    from pacsnode.peer.schedule import parse_window, trigger_for

    peer = PeerSettings(**_entry(source, "peers", table))
    try:
        trigger_for(peer.interval_s, peer.schedule)
        if peer.window:
            parse_window(peer.window)
    except ValueError as exc:
        raise ConfigError(f"{source}: peer '{peer.name}': {exc}") from exc
    if peer.filter is not None:
        if not all(isinstance(v, str) for v in peer.filter.values()):
            raise ConfigError(f"{source}: peer '{peer.name}': filter values must be strings")
        try:
            parse_query(peer.filter)
        except DomainError as exc:
            raise ConfigError(f"{source}: peer '{peer.name}': filter: {exc.message}") from exc
    if peer.bandwidth_kbps < 0:
        raise ConfigError(f"{source}: peer '{peer.name}': bandwidth_kbps must be >= 0")
    problem = peer_problem(peer)
    if problem:
        raise ConfigError(f"{source}: peer '{peer.name}': {problem}")
    return peer


def _peering(source: str, base: Path, table: dict[str, Any]) -> PeeringSettings:
    return PeeringSettings(
        table.get("host", "127.0.0.1"),
        _port(source, "peering.port", table.get("port", 8443)),
        _path(base, table.get("shared_ca")),
        _ranged(source, "peering.max_upload_mb", table.get("max_upload_mb", 16384), 1, 1 << 30),
        _ranged(source, "peering.spool_idle_s", table.get("spool_idle_s", 1800), 1, 7 * 86400),
        _ranged(
            source,
            "peering.max_transfers_per_peer",
            table.get("max_transfers_per_peer", 4),
            1,
            1024,
        ),
    )


def _entry(source: str, section: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: each [[{section}]] entry must be a table")
    _check(source, section, value)
    missing = _REQUIRED[section] - set(value)
    if missing:
        raise ConfigError(f"{source}: [[{section}]] entry lacks {', '.join(sorted(missing))}")
    return value


def _ranged(source: str, name: str, value: int | float, low: int, high: int) -> Any:
    if not low <= value <= high:
        raise ConfigError(f"{source}: '{name}' must be between {low} and {high}")
    return value


def _choice(source: str, name: str, value: str, choices: type[StrEnum]) -> Any:
    try:
        return choices(value)
    except ValueError:
        allowed = ", ".join(repr(c.value) for c in choices)
        raise ConfigError(f"{source}: '{name}' must be one of {allowed}") from None


def _aet(source: str, value: str) -> str:
    if not 0 < len(value) <= 16 or not value.isascii() or "\\" in value:
        raise ConfigError(f"{source}: 'dicom.aet' must be 1..16 ASCII characters")
    return value


def _find(source: str, table: dict[str, Any]) -> FindSettings:
    return FindSettings(
        _ranged(source, "find.limit_results", table.get("limit_results", 0), 0, 1 << 31),
        _ranged(source, "find.limit_instances", table.get("limit_instances", 0), 0, 1 << 31),
    )


_WEB_ROOT = re.compile(r"(/[A-Za-z0-9._~-]+)+")


def _dicomweb(source: str, table: dict[str, Any]) -> DicomWebSettings:
    root = table.get("root", "/dicom-web").rstrip("/")
    if not _WEB_ROOT.fullmatch(root):
        raise ConfigError(f"{source}: 'dicomweb.root' must be a path such as \"/dicom-web\"")
    origins = table.get("cors_origins", [])
    if not all(isinstance(origin, str) and origin for origin in origins):
        raise ConfigError(f"{source}: 'dicomweb.cors_origins' must be a list of origins")
    return DicomWebSettings(table.get("enabled", True), root, tuple(o.rstrip("/") for o in origins))


_TAG = re.compile(r"([0-9a-fA-F]{4}),([0-9a-fA-F]{4})")


def _private_tag(source: str, table: Any) -> PrivateTag:
    entry = _entry(source, "private_tags", table)
    match = _TAG.fullmatch(entry["tag"].strip())
    if match is None or int(match.group(1), 16) % 2 == 0:
        raise ConfigError(f"{source}: private tag {entry['tag']!r} must be 'gggg,eeee', odd group")
    if entry["vr"] not in _VRS:
        raise ConfigError(f"{source}: private tag {entry['tag']}: unknown VR {entry['vr']!r}")
    tag = int(match.group(1), 16) << 16 | int(match.group(2), 16)
    return PrivateTag(tag, entry["vr"], entry["name"], entry["creator"])


_VRS = {
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
    "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
    "UR", "US", "UT", "UV",
}  # fmt: skip


def _encoding(source: str, value: str) -> str:
    try:
        return check_encoding(value)
    except DomainError as exc:
        raise ConfigError(f"{source}: 'dicom.default_encoding': {exc.message}") from None


def _path(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    return path if path.is_absolute() else base / path


def _metadata_names(source: str, table: dict[str, Any]) -> dict[str, int]:
    names = table.get("names", {})
    for name, key in names.items():
        if not isinstance(key, int) or not 1024 <= key <= 65535:
            raise ConfigError(f"{source}: 'metadata.names.{name}' must be 1024..65535")
    return dict(names)


def _attachment_types(source: str, table: dict[str, Any]) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for name, value in table.get("types", {}).items():
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not isinstance(value[0], int)
            or not isinstance(value[1], str)
            or not 1024 <= value[0] <= 65535
        ):
            raise ConfigError(
                f"{source}: 'attachments.types.{name}' must be [number 1024..65535, \"mime/type\"]"
            )
        found[name] = (value[0], value[1])
    return found


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_secure(config: NodeConfig) -> None:
    exposed = [
        f"{name} on {host}"
        for name, host in (("http", config.http.host), ("dicom", config.dicom.host))
        if not is_loopback(host)
    ]
    if exposed and not config.users:
        raise ConfigError(
            f"{config.source}: listening {' and '.join(exposed)} needs at least one [[users]] "
            "entry (run `pacsnode hash-password` to make one), or keep the hosts on 127.0.0.1"
        )
