"""A job that works for JOB_SECONDS, checkpoints on SIGTERM, and writes its metrics.

With JOB_RELEASE_FILE it finishes as soon as that file exists (JOB_SECONDS is then the most it
works): a test that needs the job running while it looks releases it when done looking,
instead of guessing how long the looking takes."""

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
    release = os.environ.get("JOB_RELEASE_FILE")
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (release and os.path.exists(release)):
        time.sleep(0.05)
    out = os.environ["MLKUBE_OUTPUT_DIR"]
    with open(os.path.join(out, "metrics.json"), "w") as file:
        json.dump({"accuracy": 0.9, "seconds": seconds}, file)
    print("done", flush=True)


if __name__ == "__main__":
    main()
