"""What gets deflated: native frames when it pays, never already-compressed frames."""

from __future__ import annotations

import zipfile
from pathlib import Path

from pydicom.data import get_testdata_file

from benchmarks.synthetic import ct_study
from pacsnode.storage.layout import study_zip_path
from pacsnode.storage.store import StudyStore


def test_synthetic_ct_series_zip_is_smaller_than_its_p10_files(store: StudyStore) -> None:
    p10_total = 0
    study = ""
    for data in ct_study(count=12, size=512):
        p10_total += len(data)
        study = store.put_instance(data).instance.study_uid
    store.seal(study)
    zip_size = study_zip_path(store.root, study).stat().st_size
    assert zip_size < 0.7 * p10_total, (zip_size, p10_total)


def test_jpeg_frames_are_stored_not_deflated(store: StudyStore) -> None:
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"):
        result = store.put_instance(Path(get_testdata_file(name)))
        study = result.instance.study_uid
        store.seal(study)
        with zipfile.ZipFile(study_zip_path(store.root, study)) as archive:
            frames = [info for info in archive.infolist() if "/frames/" in info.filename]
            assert frames
            assert all(info.compress_type == zipfile.ZIP_STORED for info in frames), name


def test_compression_can_be_turned_off(tmp_path: Path) -> None:
    with StudyStore(tmp_path / "data", compression=False) as store:
        data = next(ct_study(count=1, size=128))
        study = store.put_instance(data).instance.study_uid
        store.seal(study)
        with zipfile.ZipFile(study_zip_path(store.root, study)) as archive:
            assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
