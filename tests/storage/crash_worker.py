"""Child process for the crash test: stores, seals and deletes until it is killed.

Every acknowledgement is appended to a log (unbuffered, so a SIGKILL loses
nothing the kernel already has): ``stored S SE I DIGEST`` after put_instance (or
put_received) returned, ``deleting I`` before and ``deleted I`` after a deletion.

Half the instances are stored as received (``storage/received.py``) and converted by a
second thread, as the node's converter does, so kills land in conversions too; their
logged digest is the one their conversion gives.
"""

from __future__ import annotations

import os
import queue
import random
import sys
import threading
import warnings
from pathlib import Path

from benchmarks.synthetic import SeriesSpec, make_instance, p10
from pacsnode.storage.limits import ArchiveLimits
from pacsnode.storage.received import receive_instance
from pacsnode.storage.results import StoredInstance
from pacsnode.storage.store import StudyStore, prepare_instance


def main() -> None:
    data_dir, log_path, round_number = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    warnings.simplefilter("ignore")
    rng = random.Random(round_number)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    store = StudyStore(data_dir, stable_age_s=0)
    store.open()
    received: queue.Queue[StoredInstance] = queue.Queue()

    def convert() -> None:
        while True:
            i = received.get()
            store.convert_received(i.study_uid, i.series_uid, i.sop_uid)

    threading.Thread(target=convert, daemon=True).start()
    os.write(log, b"ready\n")
    index = 0
    while True:
        study = rng.randrange(3)
        spec = SeriesSpec(1 + study, 1, 1 + rng.randrange(2), 10_000, size=96)
        data = p10(make_instance(spec, round_number * 1000 + index))
        index += 1
        if rng.random() < 0.5:
            i = prepare_instance(data, ArchiveLimits(), store.level).instance  # its digest
            put = store.put_received(receive_instance(data, ArchiveLimits(), frozenset()))
            assert put is not None  # every instance is new
            received.put(put.instance)
        else:
            i = store.put_instance(data).instance
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
