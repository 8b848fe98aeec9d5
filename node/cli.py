"""``pacsnode``: serve a node and work on its data from the command line.

Exit codes: 0 success, 1 the command ran but found or refused something
(refused files, verification problems), 2 bad usage, configuration or data
directory (for example another pacsnode process owns it).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import logging
import os
import ssl
import sys
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pacsnode.node.config import load_config
from pacsnode.node.core import NodeCore
from pacsnode.node.dictionary import register_private_tags
from pacsnode.node.errors import ConfigError, DomainError
from pacsnode.node.index import Origin, OriginKind
from pacsnode.node.ingest import IngestStatus
from pacsnode.node.plugins import PluginError
from pacsnode.node.settings import NodeConfig
from pacsnode.node.uploads import FileOutcome, ingest_zip, is_zip
from pacsnode.node.viewer.install import DEFAULT_REGISTRY, DEFAULT_VERSION
from pacsnode.storage.migration import Moved

EXIT_OK, EXIT_FOUND_PROBLEMS, EXIT_USAGE = 0, 1, 2


def _open(config: NodeConfig, background: bool = False, check_storage: bool = True) -> NodeCore:
    core = NodeCore(config.core)
    core.open(background=background, check_storage=check_storage)
    return core


def cmd_serve(config: NodeConfig, args: argparse.Namespace) -> int:
    from pacsnode.node.server import serve

    serve(config)
    return EXIT_OK


def _files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


_IMPORT = Origin(kind=OriginKind.IMPORT)


def _count(outcome: FileOutcome, totals: dict[str, int]) -> None:
    if outcome.result is None:
        totals["refused"] += 1
        message = outcome.error.message if outcome.error else "refused"
        print(f"\nrefused {outcome.name}: {message}", file=sys.stderr)
        return
    key = "stored" if outcome.result.status is IngestStatus.SUCCESS else "duplicate"
    totals[key] += 1


def _import_path(core: NodeCore, path: Path) -> Iterator[FileOutcome]:
    with open(path, "rb") as handle:
        if is_zip(handle):
            for outcome in ingest_zip(core, handle, _IMPORT):
                yield FileOutcome(f"{path}:{outcome.name}", outcome.result, outcome.error)
            return
        try:
            yield FileOutcome(str(path), result=core.ingest(handle, _IMPORT))
        except DomainError as exc:
            yield FileOutcome(str(path), error=exc)


def cmd_import(config: NodeConfig, args: argparse.Namespace) -> int:
    totals = {"stored": 0, "duplicate": 0, "refused": 0}
    core = _open(config)
    try:
        for count, path in enumerate(_files(args.paths), start=1):
            if not path.exists():
                totals["refused"] += 1
                print(f"\nrefused {path}: no such file", file=sys.stderr)
                continue
            try:
                for outcome in _import_path(core, path):
                    _count(outcome, totals)
            except DomainError as exc:  # a damaged ZIP
                _count(FileOutcome(str(path), error=exc), totals)
            if sys.stderr.isatty():
                print(f"\r{count} files, {totals['stored']} stored", end="", file=sys.stderr)
    finally:
        core.close()
    print(json.dumps(totals))
    return EXIT_FOUND_PROBLEMS if totals["refused"] else EXIT_OK


def cmd_export(config: NodeConfig, args: argparse.Namespace) -> int:
    core = _open(config)
    try:
        refs = core.instances_of([args.resource])
        args.to.mkdir(parents=True, exist_ok=True)
        for ref in refs:
            (args.to / f"{ref.sop_uid}.dcm").write_bytes(core.instance_p10(ref))
        print(json.dumps({"exported": len(refs), "to": str(args.to)}))
    finally:
        core.close()
    return EXIT_OK


def cmd_verify(config: NodeConfig, args: argparse.Namespace) -> int:
    from pacsnode.node.verify import verify

    core = _open(config, check_storage=False)  # a backend missing every study is a finding
    try:
        problems = verify(core)
    finally:
        core.close()
    for problem in problems:
        print(problem)
    print(json.dumps({"problems": len(problems)}))
    return EXIT_FOUND_PROBLEMS if problems else EXIT_OK


def cmd_reindex(config: NodeConfig, args: argparse.Namespace) -> int:
    if args.search:
        return _reindex_search(config)
    # --drop-missing: the operator says the studies the backend lacks are lost for good
    core = _open(config, check_storage=not args.drop_missing)
    try:
        report = core.reindex()
    finally:
        core.close()
    print(
        json.dumps(
            {"studies": report.studies, "indexed": report.indexed, "unindexed": report.unindexed}
        )
    )
    return EXIT_OK


def cmd_migrate_storage(config: NodeConfig, args: argparse.Namespace) -> int:
    """Move the sealed studies of the old storage backend into the configured one."""
    core = NodeCore(config.core)
    # no sealing, no conversions, no index plugins: the migration is all that writes; and
    # no check that the configured backend holds the studies, since it does not yet
    core.open(background=False, check_storage=False)
    done = 0

    def progress(study_uid: str, moved: Moved) -> None:
        nonlocal done
        done += 1
        if sys.stderr.isatty():
            print(f"\r{done} studies ({moved.value}: {study_uid})", end="", file=sys.stderr)

    try:
        report = core.migrate_storage(
            args.source, remove_source=args.remove_source, progress=progress
        )
    finally:
        core.close()
    print(json.dumps(report.as_json()))
    if report.conflicts:
        print(
            f"pacsnode: {len(report.conflicts)} studies hold instances that differ between "
            f"the backends: kept as {config.core.plugins.storage_backend!r} has them, and "
            f"left in {args.source!r} too",
            file=sys.stderr,
        )
        return EXIT_FOUND_PROBLEMS
    return EXIT_OK


def _reindex_search(config: NodeConfig) -> int:
    """Rebuild the search index from the study ZIPs (it works even with [search] off,
    so that turning search on later starts from a full index)."""
    core = _open(config)
    try:
        count = core.rebuild_search()
    finally:
        core.close()
    print(json.dumps({"search_indexed": count}))
    return EXIT_OK


def _set_protection(config: NodeConfig, patient: str, protected: bool) -> int:
    core = _open(config)
    try:
        core.annotations.set_protected(patient, protected)
    finally:
        core.close()
    return EXIT_OK


def cmd_protect(config: NodeConfig, args: argparse.Namespace) -> int:
    return _set_protection(config, args.patient, True)


def cmd_unprotect(config: NodeConfig, args: argparse.Namespace) -> int:
    return _set_protection(config, args.patient, False)


def cmd_stats(config: NodeConfig, args: argparse.Namespace) -> int:
    core = _open(config)
    try:
        print(json.dumps(core.statistics(), indent=2))
    finally:
        core.close()
    return EXIT_OK


def cmd_identity(config: NodeConfig, args: argparse.Namespace) -> int:
    from pacsnode.node.replication import node_identity

    print(node_identity(config).fingerprint)
    return EXIT_OK


def _ask_node(config: NodeConfig, path: str, user: str | None) -> object:
    """GET a path of the running node's REST API (the CLI cannot open its data meanwhile)."""
    scheme = "https" if config.http.tls_cert else "http"
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::") else config.http.host
    request = urllib.request.Request(f"{scheme}://{host}:{config.http.port}{path}")
    if user:
        password = os.environ.get("PACSNODE_PASSWORD") or getpass.getpass()
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = None
    if config.http.tls_cert:
        context = ssl.create_default_context(cafile=str(config.http.tls_cert))
        context.check_hostname = False
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"the node answered {exc.code}: {exc.read()[:200]!r}") from exc
    except OSError as exc:
        raise ConfigError(
            f"no node answers at {host}:{config.http.port} ({exc}); start it with `pacsnode serve`"
        ) from exc


def _peer_line(name: str, state: dict[str, Any], last_change: int) -> str:
    """One peer's state on one line; "-" where a field does not apply to it."""
    lag = last_change - state["PushCursor"] if state.get("Push") and state["Url"] else None
    queued = state.get("QueuedStudies")
    return (
        f"{name}: url={state['Url'] or '(passive)'} push={state['Push']} pull={state['Pull']} "
        f"last-contact={state.get('LastContact') or 'never'} "
        f"last-success={state.get('LastSuccess') or 'never'} "
        f"queued={queued if queued is not None else '-'} studies "
        f"push-lag={lag if lag is not None else '-'} changes "
        f"last-error={state.get('LastError') or '-'}"
    )


def cmd_peers(config: NodeConfig, args: argparse.Namespace) -> int:
    peers = _ask_node(config, "/peers?expand", args.user)
    last_change = _ask_node(config, "/statistics", args.user)["LastChange"]  # type: ignore[index]
    assert isinstance(peers, dict)
    if not peers:
        print("no peers configured")
    for name, state in sorted(peers.items()):
        print(_peer_line(name, state, last_change))
    return EXIT_OK


def cmd_viewer(config: NodeConfig, args: argparse.Namespace) -> int:
    """``viewer install``: the only action so far."""
    from pacsnode.node.viewer import ViewerInstallError, viewer_dir
    from pacsnode.node.viewer.install import PACKAGE, install

    target = viewer_dir(config)
    try:
        release = install(
            target,
            config.dicomweb.root,
            args.version,
            args.registry,
            say=lambda line: print(line, file=sys.stderr),
        )
    except ViewerInstallError as exc:
        print(f"pacsnode: {exc.message}", file=sys.stderr)
        return EXIT_FOUND_PROBLEMS
    if not config.dicomweb.enabled:
        print("pacsnode: [dicomweb] is disabled; the viewer needs it", file=sys.stderr)
    print(json.dumps({"installed": f"{PACKAGE}@{release.version}", "to": str(target)}))
    return EXIT_OK


def cmd_hash_password(config: NodeConfig | None, args: argparse.Namespace) -> int:
    from pacsnode.node.auth import hash_password

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
    if not password:
        print("pacsnode: the password is empty", file=sys.stderr)
        return EXIT_USAGE
    print(hash_password(password))
    return EXIT_OK


CONFIG_VARIABLE = "PACSNODE_CONFIG"


def _config_from_environment() -> Path | None:
    value = os.environ.get(CONFIG_VARIABLE, "").strip()
    return Path(value) if value else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacsnode", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        type=Path,
        help=f"TOML configuration (default: ${CONFIG_VARIABLE}, else the built-in defaults)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: object, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        # Accepted after the command too (`pacsnode serve --config FILE`); SUPPRESS keeps
        # a value given before the command when none is given after it.
        sub.add_argument(
            "--config", type=Path, default=argparse.SUPPRESS, help="TOML configuration"
        )
        return sub

    add("serve", cmd_serve, "run the node: REST API and DICOM services")
    sub = add("import", cmd_import, "store DICOM files, folders (recursively) and ZIPs")
    sub.add_argument("paths", nargs="+", type=Path)
    sub = add("export", cmd_export, "write the P10 files of a patient/study/series to a folder")
    sub.add_argument("resource", help="resource id (as /patients, /studies… show)")
    sub.add_argument("--to", type=Path, required=True, help="destination folder")
    add("verify", cmd_verify, "check the study ZIPs against the index")
    sub = add("reindex", cmd_reindex, "rebuild the DICOM part of the index from the study ZIPs")
    sub.add_argument(
        "--search",
        action="store_true",
        help="rebuild the search index (every attribute) instead, from the study ZIPs",
    )
    sub.add_argument(
        "--drop-missing",
        action="store_true",
        help="run even when the storage backend holds none of the sealed studies the index "
        "knows, removing them from the index (they are lost: not for a changed backend)",
    )
    sub = add(
        "migrate-storage",
        cmd_migrate_storage,
        "move the sealed studies of another storage backend into the configured one "
        "(after changing [storage] backend; the node stopped)",
    )
    sub.add_argument(
        "--from",
        dest="source",
        required=True,
        help="the backend the studies are in now (its [plugins.NAME] settings apply)",
    )
    sub.add_argument(
        "--remove-source",
        action="store_true",
        help="remove each study from the old backend once the new one holds it (checked)",
    )
    sub = add("protect", cmd_protect, "protect a patient from recycling")
    sub.add_argument("patient", help="patient resource id")
    sub = add("unprotect", cmd_unprotect, "let a patient be recycled again")
    sub.add_argument("patient", help="patient resource id")
    add("stats", cmd_stats, "print counts and sizes")
    sub = add("peers", cmd_peers, "show each peer's state, asked of the running node")
    sub.add_argument("--user", help="REST user (password from PACSNODE_PASSWORD or a prompt)")
    add(
        "identity",
        cmd_identity,
        "print this node's id (certificate fingerprint) for the other site's [[peers]]",
    )
    sub = add("viewer", cmd_viewer, "the OHIF Viewer the node serves under /viewer/")
    actions = sub.add_subparsers(dest="action", required=True, metavar="ACTION")
    help_text = "fetch the OHIF Viewer from the npm registry, verified, for /viewer/"
    sub = actions.add_parser("install", help=help_text, description=help_text)
    sub.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML configuration")
    sub.add_argument(
        "--version", default=DEFAULT_VERSION, help="@ohif/app version or dist-tag (%(default)s)"
    )
    sub.add_argument("--registry", default=DEFAULT_REGISTRY, help="npm registry (%(default)s)")
    add(
        "hash-password",
        cmd_hash_password,
        "read a password (prompt or stdin) and print its hash for [[users]]",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Every command may write patient data (studies, index, exports): 0600 files, 0700
    # directories, set before anything is written.
    os.umask(0o077)
    # pynetdicom logs every DIMSE message at INFO; that is noise for an archive
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "serve" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        if args.command == "hash-password":
            return cmd_hash_password(None, args)
        config = load_config(args.config or _config_from_environment())
        register_private_tags(config.private_tags)
        return int(args.handler(config, args))
    except DomainError as exc:
        print(f"pacsnode: {exc.message}", file=sys.stderr)
        if args.verbose and isinstance(exc, PluginError) and exc.__cause__ is not None:
            # the plugin's own traceback, for its author; without -v one line says it all
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
