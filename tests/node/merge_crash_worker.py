"""Child process for the peer-merge crash test: merges peers' study ZIPs until killed.

Before saying "ready" it makes this round's study ZIPs with a separate store (as a
peer would send them). Then it merges them through the node's one ingest path,
with the sealer running, and logs ``merged SOP STUDY`` for each instance once the
merge returned (what a peer would be told was stored).
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path

from benchmarks.synthetic import SeriesSpec, make_instance, p10
from pacsnode.node.core import NodeCore
from pacsnode.node.index import Origin, OriginKind
from pacsnode.node.settings import CoreSettings
from pacsnode.storage.store import StudyStore

STUDIES_PER_ROUND = 40
INSTANCES_PER_STUDY = 3


def make_zips(directory: Path, round_number: int) -> list[Path]:
    """This round's studies, each as the sealed ZIP a peer sends (new UIDs each round)."""
    shutil.rmtree(directory, ignore_errors=True)
    zips = []
    with StudyStore(directory / "peer") as peer:
        for study in range(STUDIES_PER_ROUND):
            patient = 1 + study % 5
            spec = SeriesSpec(patient, round_number * 1000 + study + 1, 1, 1000, size=32)
            uid = ""
            for index in range(INSTANCES_PER_STUDY):
                uid = peer.put_instance(p10(make_instance(spec, index))).instance.study_uid
            target = directory / f"{study}.zip"
            shutil.copyfile(peer.study_zip(uid), target)
            zips.append(target)
    return zips


def main() -> None:
    data_dir, log_path, round_number = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    warnings.simplefilter("ignore")
    zips = make_zips(data_dir.parent / "peer-zips", round_number)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    core = NodeCore(CoreSettings(data_dir, stable_age_s=0.05, maximum_patient_count=4))
    core.open()
    os.write(log, b"ready\n")
    origin = Origin(kind=OriginKind.PEER, peer="crash")
    for path in zips:
        result = core.merge_study_zip(path, origin)
        for instance in result.added:
            os.write(log, f"merged {instance.sop_uid} {instance.study_uid}\n".encode())
    core.close()


if __name__ == "__main__":
    main()
