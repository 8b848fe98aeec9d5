"""The ``pacsnode`` command as scripts use it: output, exit codes, messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from pacsnode.node.core import NodeCore
from pacsnode.node.settings import CoreSettings
from tests.node.server import REPO, NodeProcess
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e  # starts real node processes


def pacsnode(
    config: Path | None, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    options = ["--config", str(config)] if config else []
    return subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", *options, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def make_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'data_dir = "data"\n{extra}')
    return path


def test_import_export_verify_stats(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.dcm").write_bytes(ct_bytes(0))
    (folder / "sub" / "b.dcm").write_bytes(ct_bytes(1))
    with zipfile.ZipFile(folder / "more.zip", "w") as archive:
        archive.writestr("c.dcm", ct_bytes(2))
        archive.writestr("a-again.dcm", ct_bytes(0))
    imported = pacsnode(config, "import", str(folder))
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == {"stored": 3, "duplicate": 1, "refused": 0}

    (folder / "junk.txt").write_text("not dicom")
    again = pacsnode(config, "import", str(folder))
    assert again.returncode == 1
    assert json.loads(again.stdout) == {"stored": 0, "duplicate": 4, "refused": 1}
    assert "junk.txt" in again.stderr and "not a DICOM file" in again.stderr

    stats = json.loads(pacsnode(config, "stats").stdout)
    assert stats["CountInstances"] == 3
    verified = pacsnode(config, "verify")
    assert verified.returncode == 0 and json.loads(verified.stdout) == {"problems": 0}

    study_ids = _ids(config, "STUDY")
    out = tmp_path / "out"
    exported = pacsnode(config, "export", study_ids[0], "--to", str(out))
    assert exported.returncode == 0, exported.stderr
    assert len(list(out.glob("*.dcm"))) == 3


def _ids(config: Path, level: str) -> list[str]:
    code = (
        "import sys, json; from node.config import load_config; from node.core import "
        "NodeCore; from node.ids import Level; c = NodeCore(load_config("
        f"__import__('pathlib').Path({str(config)!r})).core); c.open(background=False); "
        f"print(json.dumps(c.list_ids(Level.{level}))); c.close()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def test_reindex_protect_unprotect(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    (tmp_path / "a.dcm").write_bytes(ct_bytes(0))
    assert pacsnode(config, "import", str(tmp_path / "a.dcm")).returncode == 0
    reindexed = pacsnode(config, "reindex")
    assert json.loads(reindexed.stdout)["indexed"] == 0
    patient = _ids(config, "PATIENT")[0]
    assert pacsnode(config, "protect", patient).returncode == 0
    assert pacsnode(config, "unprotect", patient).returncode == 0
    missing = pacsnode(config, "protect", "00000000-00000000-00000000-00000000-00000000")
    assert missing.returncode == 2 and "no resource" in missing.stderr


def test_a_backend_without_the_sealed_studies_stops_the_start(tmp_path: Path) -> None:
    """Every study ZIP gone (a changed [storage] backend, or a lost disk): the start and a
    plain reindex refuse, saying what to do; ``reindex --drop-missing`` accepts the loss."""
    config = make_config(tmp_path, "[search]\nenabled = false\n")
    core = NodeCore(CoreSettings(data_dir=tmp_path / "data", stable_age_s=0))
    core.open(background=False)
    try:
        for study in (1, 2):
            core.ingest(ct_bytes(0, study=study))
        assert len(core.seal_quiet_studies(now=time.monotonic() + 1)) == 2
    finally:
        core.close()
    for lost in (tmp_path / "data").rglob("study.zip"):
        lost.unlink()
    for command in (("stats",), ("reindex",)):
        refused = pacsnode(config, *command)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "holds none of the sealed studies the index knows" in refused.stderr
        assert "migrate-storage --from" in refused.stderr and "--drop-missing" in refused.stderr
    verified = pacsnode(config, "verify")  # it reports what is missing rather than refuse
    assert verified.returncode == 1 and json.loads(verified.stdout.splitlines()[-1])["problems"]
    dropped = pacsnode(config, "reindex", "--drop-missing")
    assert dropped.returncode == 0, dropped.stderr
    assert json.loads(dropped.stdout)["unindexed"] == 2
    assert json.loads(pacsnode(config, "stats").stdout)["CountInstances"] == 0


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    config = make_config(tmp_path, "[storage]\nmaximum_patient_count = -1\n")
    result = pacsnode(config, "stats")
    assert result.returncode == 2
    assert "maximum_patient_count" in result.stderr and str(config) in result.stderr
    assert "Traceback" not in result.stderr


def test_refuses_to_expose_without_users(tmp_path: Path) -> None:
    result = pacsnode(make_config(tmp_path, '[dicom]\nhost = "0.0.0.0"\n'), "serve")
    assert result.returncode == 2 and "[[users]]" in result.stderr


def test_data_dir_in_use(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path).start()
    try:
        result = pacsnode(node.config, "stats")
        assert result.returncode == 2 and "in use by another pacsnode process" in result.stderr
    finally:
        node.stop()


def test_hash_password_and_authenticated_rest(tmp_path: Path) -> None:
    hashed = pacsnode(None, "hash-password", stdin="s3cret\n")
    assert hashed.returncode == 0 and hashed.stdout.startswith("scrypt$")
    extra = f'\n[[users]]\nname = "alice"\npassword_hash = "{hashed.stdout.strip()}"\n'
    node = NodeProcess(tmp_path, extra_toml=extra, credentials=("alice", "s3cret")).start()
    try:
        assert node.request("GET", "/system").status == 200
        anonymous = node.request("GET", "/system", auth=False)
        assert anonymous.status == 401 and anonymous.json()["ErrorCode"] == "unauthorized"
        node.credentials = ("alice", "wrong")
        assert node.request("GET", "/statistics").status == 401
    finally:
        node.stop()


def test_help_everywhere() -> None:
    for command in ("serve", "import", "export", "verify", "reindex", "protect", "stats"):
        result = pacsnode(None, command, "--help")
        assert result.returncode == 0 and "usage: pacsnode" in result.stdout


def test_config_after_the_command_and_from_the_environment(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    (tmp_path / "a.dcm").write_bytes(ct_bytes(0))
    command = ["import", str(tmp_path / "a.dcm"), "--config", str(config)]
    after = subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert after.returncode == 0, after.stderr
    assert (tmp_path / "data").is_dir()
    from_environment = subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", "stats"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PACSNODE_CONFIG": str(config)},
    )
    assert from_environment.returncode == 0, from_environment.stderr
    assert json.loads(from_environment.stdout)["CountInstances"] == 1
    missing = pacsnode(None, "stats", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "nope.toml" in missing.stderr
