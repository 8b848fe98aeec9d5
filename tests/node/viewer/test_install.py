"""``pacsnode viewer install`` against a registry on disk (``file://`` URLs through the same
urllib code that reads registry.npmjs.org): verified, only ``dist/``, rebased to /viewer/."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from pacsnode.node.cli import main
from pacsnode.node.viewer import ViewerInstallError
from pacsnode.node.viewer.install import app_config, install, installed, unpack_dist
from tests.node.viewer.build import file_registry, ohif_tarball


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "pacsnode.toml"
    config.write_text('data_dir = "data"\n[dicomweb]\nroot = "/dicomweb"\n')
    return config


def test_cli_installs_the_build_rebased_to_viewer(tmp_path: Path, capsys) -> None:
    registry = file_registry(tmp_path / "registry", "3.13.2", ohif_tarball())
    config = _config(tmp_path)

    code = main(["--config", str(config), "viewer", "install", "--registry", registry])

    assert code == 0, capsys.readouterr().err
    viewer = tmp_path / "data" / "viewer"
    assert json.loads(capsys.readouterr().out) == {
        "installed": "@ohif/app@3.13.2",
        "to": str(viewer),
    }
    assert installed(viewer) == {
        "package": "@ohif/app",
        "version": "3.13.2",
        "tarball": (tmp_path / "registry/@ohif/app/app-3.13.2.tgz").as_uri(),
    }
    index = (viewer / "index.html").read_text()
    assert 'window.PUBLIC_URL="/viewer/"' in index
    assert 'src="/viewer/app.bundle.0f6159c501addfe9.js"' in index
    assert 'href="/viewer/manifest.json"' in index and 'content="/viewer/assets/' in index
    assert 'src="//cdn.example/keep.js"' in index  # a protocol-relative URL is not a path
    for bundle in ("app.bundle.0f6159c501addfe9.js", "compute.bundle.0fc3a3ee85296cf2.js"):
        assert '__webpack_require__.p = "/viewer/"' in (viewer / bundle).read_text()
    assert "url(/viewer/a34f9d1faa5f3315.woff2)" in (viewer / "app.bundle.css").read_text()
    manifest = json.loads((viewer / "manifest.json").read_text())
    assert manifest == {"icons": [{"src": "/viewer/assets/icon.png"}], "start_url": "/viewer/"}
    assert (viewer / "app-config.js").read_text() == app_config("/dicomweb")
    assert not (tmp_path / "data" / "package.json").exists()
    assert [path.name for path in (tmp_path / "data").iterdir()] == ["viewer"]  # no leftovers


def test_app_config_points_ohif_at_the_nodes_dicomweb_root() -> None:
    text = app_config("/dicom-web")
    assert text.startswith("// Written by `pacsnode viewer install`")
    config = json.loads(text.split("window.config = ", 1)[1].rstrip().rstrip(";"))
    assert config["routerBasename"] == "/viewer"
    assert config["defaultDataSourceName"] == "pacsnode"
    (source,) = config["dataSources"]
    assert source["namespace"] == "@ohif/extension-default.dataSourcesModule.dicomweb"
    settings = source["configuration"]
    assert settings["qidoRoot"] == settings["wadoRoot"] == settings["wadoUriRoot"] == "/dicom-web"
    assert settings["imageRendering"] == settings["thumbnailRendering"] == "wadors"
    assert settings["supportsFuzzyMatching"] and settings["dicomUploadEnabled"]
    assert settings["enableStudyLazyLoad"] is False  # the stored study metadata, as it is
    assert settings["bulkDataURI"] == {"enabled": True, "relativeResolution": "studies"}


def test_a_tarball_that_does_not_match_the_registrys_hash_is_refused(tmp_path: Path) -> None:
    registry = file_registry(
        tmp_path / "registry", "3.13.2", ohif_tarball(), integrity="sha512-" + "A" * 88
    )
    viewer = tmp_path / "data" / "viewer"
    viewer.mkdir(parents=True)
    (viewer / "index.html").write_text("the viewer installed before")

    with pytest.raises(ViewerInstallError, match="sha512 does not match"):
        install(viewer, "/dicom-web", "3.13.2", registry)

    assert (viewer / "index.html").read_text() == "the viewer installed before"
    assert sorted(path.name for path in viewer.parent.iterdir()) == ["viewer"]


def test_cli_reports_a_failed_install_with_exit_code_1(tmp_path: Path, capsys) -> None:
    registry = file_registry(tmp_path / "registry", "3.13.2", ohif_tarball())

    code = main(
        [
            "--config",
            str(_config(tmp_path)),
            "viewer",
            "install",
            "--registry",
            registry,
            "--version",
            "9.9.9",
        ]
    )

    assert code == 1
    assert "9.9.9" in capsys.readouterr().err
    assert installed(tmp_path / "data" / "viewer") is None


def test_a_package_without_a_built_dist_is_refused(tmp_path: Path) -> None:
    registry = file_registry(tmp_path / "registry", "1.0.0", ohif_tarball(dist={"x.js": ""}))

    with pytest.raises(ViewerInstallError, match=r"no built dist/index\.html"):
        install(tmp_path / "viewer", "/dicom-web", "1.0.0", registry)


def test_a_build_of_an_unknown_layout_is_refused(tmp_path: Path) -> None:
    registry = file_registry(
        tmp_path / "registry", "1.0.0", ohif_tarball(dist={"index.html": "<html></html>"})
    )

    with pytest.raises(ViewerInstallError, match="PUBLIC_URL"):
        install(tmp_path / "viewer", "/dicom-web", "1.0.0", registry)


@pytest.mark.parametrize(
    ("name", "kind", "linkname"),
    [
        ("package/dist/../../escaped.js", tarfile.REGTYPE, ""),
        ("package/dist/link.js", tarfile.SYMTYPE, "/etc/passwd"),
        ("package/dist/hard.js", tarfile.LNKTYPE, "package/dist/index.html"),
        ("package/src/index.js", tarfile.REGTYPE, ""),
    ],
)
def test_only_files_inside_dist_are_unpacked(
    tmp_path: Path, name: str, kind: bytes, linkname: str
) -> None:
    tarball = tmp_path / "package.tgz"
    with tarfile.open(tarball, mode="w:gz") as archive:
        for member_name, data in (("package/dist/index.html", b"html"), (name, b"js")):
            member = tarfile.TarInfo(member_name)
            member.size = len(data) if kind == tarfile.REGTYPE else 0
            if member_name == name:
                member.type, member.linkname = kind, linkname
            archive.addfile(member, io.BytesIO(data) if member.size else None)

    try:
        unpack_dist(tarball, tmp_path / "viewer")
    except ViewerInstallError:
        pass  # refusing the whole tarball is as good as leaving the member out

    outside = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}
    assert outside <= {"package.tgz", "viewer", "viewer/index.html"}


def test_builds_before_3_13_are_rebased_too(tmp_path: Path) -> None:
    # 3.11 and 3.12 write PUBLIC_URL with spaces and single quotes, and 20-digit hashes.
    index = '<script>window.PUBLIC_URL = \'/\';</script><script defer="defer" src="/app.js">'
    bundle = {"app.bundle.096daabbdde29bd851ab.js": '__webpack_require__.p = "/";'}
    registry = file_registry(
        tmp_path / "registry", "3.12.10", ohif_tarball(dist={"index.html": index, **bundle})
    )

    install(tmp_path / "viewer", "/dicom-web", "3.12.10", registry)

    rebased = (tmp_path / "viewer" / "index.html").read_text()
    assert "window.PUBLIC_URL = '/viewer/';" in rebased and 'src="/viewer/app.js"' in rebased
