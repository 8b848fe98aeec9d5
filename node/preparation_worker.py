"""An ingest worker process (``python -m pacsnode.node.preparation_worker``).

It reads requests (an instance's bytes or path, the archive limits, the compression
level) from stdin, parses and converts the instance as the node would, and writes back
``(True, PreparedInstance)`` or ``(False, the exception)``, one request at a time. It
exits at EOF on stdin: when the node closes the pipe, or is gone however it went.
See ``node/preparation.py``.
"""

from __future__ import annotations

import sys

from pacsnode.node.preparation import receive_message, send_message, skip_pydicom_value_warnings
from pacsnode.storage.store import prepare_instance


def main() -> None:
    skip_pydicom_value_warnings()
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed may land in the answers
    while True:
        try:
            source, limits, level = receive_message(requests)
        except EOFError:
            return
        try:
            answer = (True, prepare_instance(source, limits, level))
        except Exception as exc:  # carried back: the node raises it in the arriving thread
            answer = (False, exc)
        send_message(answers, answer)


if __name__ == "__main__":
    main()
