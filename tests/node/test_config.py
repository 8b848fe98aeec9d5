"""Configuration: defaults, overrides, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsnode.node.config import load_config
from pacsnode.node.errors import ConfigError
from pacsnode.node.recycling import StorageMode


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = load_config(None)
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8042)
    assert (config.dicom.aet, config.dicom.port) == ("PACSNODE", 4242)
    assert config.core.stable_age_s == 60 and config.core.compression


def test_overrides_keep_other_defaults(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            (
                'data_dir = "store"\n[storage]\nmaximum_patient_count = 10\n'
                'maximum_storage_mode = "reject"\n[metadata.names]\nSampleName = 1024\n'
                '[attachments.types]\nreport = [1025, "application/pdf"]\n'
                '[[modalities]]\nname = "viewer"\naet = "VIEWER"\nhost = "127.0.0.1"\nport = 104\n'
            ),
        )
    )
    assert config.data_dir == tmp_path / "store"  # relative to the file
    assert config.core.maximum_patient_count == 10
    assert config.core.maximum_storage_mode is StorageMode.REJECT
    assert config.core.compression  # untouched default
    assert config.core.metadata_names == {"SampleName": 1024}
    assert config.core.attachment_types == {"report": (1025, "application/pdf")}
    assert config.modalities[0].aet == "VIEWER"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[storage]\ncompresion = true\n", "unknown key 'storage.compresion'"),
        ('[http]\nport = "80"\n', "'http.port' must be int"),
        ("[http]\nport = 70000\n", "'http.port' must be a port number"),
        ('[storage]\nmaximum_storage_mode = "delete"\n', "'storage.maximum_storage_mode'"),
        ("[storage]\ncompression_level = 12\n", "'storage.compression_level'"),
        ('[dicom]\naet = "A_TITLE_THAT_IS_TOO_LONG"\n', "'dicom.aet'"),
        ("[metadata.names]\nX = 5\n", "'metadata.names.X'"),
        ('[[modalities]]\nname = "v"\n', "lacks aet, host, port"),
        ("this is = = not toml", "not valid TOML"),
        ('[http]\nhost = "0.0.0.0"\n', "needs at least one [[users]]"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in caught.value.message
    assert str(path) in caught.value.message


def test_listening_widely_is_allowed_with_users(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            ('[http]\nhost = "0.0.0.0"\n[[users]]\nname = "alice"\npassword_hash = "scrypt$x"\n'),
        )
    )
    assert config.users[0].name == "alice"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    "path",
    sorted(Path(__file__).resolve().parents[2].glob("configs/**/*.toml")),
    ids=lambda p: p.name,
)
def test_shipped_configurations_load(path: Path) -> None:
    assert load_config(path).dicom.port > 0
