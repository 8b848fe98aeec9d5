"""Child process for the crash test: stores, seals and deletes until it is killed.

Every acknowledgement is appended to a log (unbuffered, so a SIGKILL loses
nothing the kernel already has): ``stored S SE I DIGEST`` after put_instance
returned, ``deleting I`` before and ``deleted I`` after a deletion.
"""

from __future__ import annotations

import os
import random
import sys
import warnings
from pathlib import Path

from benchmarks.synthetic import SeriesSpec, make_instance, p10
from pacsnode.storage.store import StudyStore


def main() -> None:
    data_dir, log_path, round_number = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    warnings.simplefilter("ignore")
    rng = random.Random(round_number)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    store = StudyStore(data_dir, stable_age_s=0)
    store.open()
    os.write(log, b"ready\n")
    index = 0
    while True:
        study = rng.randrange(3)
        spec = SeriesSpec(1 + study, 1, 1 + rng.randrange(2), 10_000, size=96)
        dataset = make_instance(spec, round_number * 1000 + index)
        index += 1
        result = store.put_instance(p10(dataset))
        i = result.instance
        os.write(log, f"stored {i.study_uid} {i.series_uid} {i.sop_uid} {i.digest}\n".encode())
        action = rng.random()
        if action < 0.25:
            store.seal(i.study_uid)
        elif action < 0.3:
            os.write(log, f"deleting {i.sop_uid}\n".encode())
            store.delete_instance(i.study_uid, i.series_uid, i.sop_uid)
            os.write(log, f"deleted {i.sop_uid}\n".encode())


if __name__ == "__main__":
    main()
