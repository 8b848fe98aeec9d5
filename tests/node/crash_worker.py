"""Child process for the node crash test: ingests (and deletes) until killed.

Acknowledgements go to a log, unbuffered: ``acked SOP STUDY`` after ingest
returned, ``deleting SOP`` before and ``deleted SOP`` after a deletion.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import warnings
from pathlib import Path

from benchmarks.synthetic import SeriesSpec, make_instance, p10
from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.settings import CoreSettings


def main() -> None:
    data_dir, log_path, round_number = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    warnings.simplefilter("ignore")
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    core = NodeCore(CoreSettings(data_dir, stable_age_s=0.2, maximum_patient_count=4))
    core.open()
    os.write(log, b"ready\n")

    def sender(thread: int) -> None:
        rng = random.Random(round_number * 10 + thread)
        index = 0
        while True:
            patient = 1 + rng.randrange(6)
            spec = SeriesSpec(patient, 1, 1, 10_000, size=48)
            dataset = make_instance(spec, round_number * 100_000 + thread * 10_000 + index)
            index += 1
            result = core.ingest(p10(dataset))
            sop = result.instance.sop_uid
            os.write(log, f"acked {sop} {result.instance.study_uid}\n".encode())
            if rng.random() < 0.1:
                os.write(log, f"deleting {sop}\n".encode())
                core.delete(result.ids[Level.INSTANCE])
                os.write(log, f"deleted {sop}\n".encode())

    threads = [threading.Thread(target=sender, args=(n,), daemon=True) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
