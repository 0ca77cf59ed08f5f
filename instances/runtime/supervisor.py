"""Parent of one engine process (the `process` backend's stand-in for a container's init).

Started detached, it runs the engine, forwards SIGTERM/SIGINT to it, and when the engine exits
writes its exit code and time to a file, so a portal that restarted meanwhile still learns how
the engine ended. Standard library only: it must not import Django.

usage: python -m instances.runtime.supervisor EXIT_FILE -- COMMAND...
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    exit_file, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    child = subprocess.Popen(command)

    def forward(signum, _frame):
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    # A signal death is reported like a container runtime does: 128 + signal number.
    exit_code = 128 - code if code < 0 else code
    tmp = f"{exit_file}.tmp"
    with open(tmp, "w") as handle:
        json.dump({"exit_code": exit_code, "finished_at": time.time(), "oom_killed": _oom_killed()}, handle)
    os.replace(tmp, exit_file)
    return exit_code


def _oom_killed() -> bool:
    """Whether the memory cgroup we run in recorded an OOM kill (cgroup v1 and v2)."""
    with open("/proc/self/cgroup") as handle:
        memberships = handle.read().splitlines()
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        if controllers in ("memory", ""):
            base = "/sys/fs/cgroup/memory" if controllers == "memory" else "/sys/fs/cgroup"
            for name in ("memory.oom_control", "memory.events"):
                try:
                    with open(f"{base}{path}/{name}") as handle:
                        text = handle.read()
                except OSError:
                    continue
                for row in text.splitlines():
                    key, _, value = row.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
