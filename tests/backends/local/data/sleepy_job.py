"""A job that works for JOB_SECONDS, checkpoints on SIGTERM, and writes its metrics."""

import json
import os
import signal
import sys
import time

DONE = False


def _checkpoint(signum: int, frame: object) -> None:
    print("checkpoint: SIGTERM received", flush=True)
    sys.exit(143)


def main() -> None:
    signal.signal(signal.SIGTERM, _checkpoint)
    seconds = float(os.environ.get("JOB_SECONDS", "2"))
    print(f"working for {seconds}s, attempt {os.environ.get('MLKUBE_JOB_ATTEMPT')}", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
    out = os.environ["MLKUBE_OUTPUT_DIR"]
    with open(os.path.join(out, "metrics.json"), "w") as file:
        json.dump({"accuracy": 0.9, "seconds": seconds}, file)
    print("done", flush=True)


if __name__ == "__main__":
    main()
