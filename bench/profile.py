"""Optional sampling profiles of the server (py-spy) during a measured phase, and a text summary."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Set by ``python -m bench --profile DIR``: each measured phase writes DIR/<name>.txt.
PROFILE_DIR: Path | None = None


class Profiler:
    """py-spy attached to the server for one phase (a no-op unless --profile is given)."""

    def __init__(self, pid: int, name: str) -> None:
        self.pid = pid
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if PROFILE_DIR is None or not os.path.exists(spy):
            return self
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        # --nonblocking: sample without stopping the server, so the figures stay close to real ones.
        self.proc = subprocess.Popen(  # noqa: S603 - py-spy from our venv, fixed arguments
            [spy, "record", "--pid", str(self.pid), "--rate", "250", "--format", "raw",
             "--output", str(PROFILE_DIR / f"{self.name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def summarize(path: Path, top: int = 25) -> str:
    """Top functions by own samples and by inclusive samples, from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{path.name}: {total} samples", "own:"]
    out += [f"  {100 * n / total:5.1f} %  {f}" for f, n in own.most_common(top)]
    out.append("inclusive:")
    out += [f"  {100 * n / total:5.1f} %  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(summarize(Path(arg)))
