"""A writer process that starts, says READY, and never answers a batch (a test double
for one stuck in a database call): ``python -m tests.store.stuck_writer``."""

from __future__ import annotations

import sys
import time

from switchyard.store.frames import READY, frame, read_frame

if __name__ == "__main__":
    read_frame(sys.stdin.buffer)  # the settings
    sys.stdout.buffer.write(frame(READY))
    sys.stdout.buffer.flush()
    time.sleep(60)  # killed by the worker long before
