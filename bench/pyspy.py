"""py-spy around a benchmark: sample some processes for a while, then say which frames dominate.

``Recording`` starts one ``py-spy record --nonblocking --gil`` per process (``--format raw``, the
collapsed stacks; optionally an SVG flame graph too) and waits for them. ``--gil`` keeps only
samples of the thread holding the GIL: a Ray worker's threads blocked in C++ (the core worker's
main loop, uvloop's poll) would otherwise count as busy; ``summarize`` reads a
collapsed file and answers the top frames by self time (the leaf: where the CPU actually was)
and by inclusive time (on the stack at all).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")


@dataclass(frozen=True)
class FrameShare:
    frame: str
    samples: int
    share: float  # of every sample of the process


@dataclass(frozen=True)
class ProfileSummary:
    """The frames that dominate one process's samples."""

    name: str
    samples: int
    self_time: tuple[FrameShare, ...]
    inclusive: tuple[FrameShare, ...]

    def describe(self, top: int = 12) -> str:
        lines = [f"{self.name}: {self.samples} samples", "  self (leaf frame):"]
        lines += [f"    {f.share:6.1%}  {f.frame}" for f in self.self_time[:top]]
        lines.append("  inclusive (on the stack):")
        lines += [f"    {f.share:6.1%}  {f.frame}" for f in self.inclusive[:top]]
        return "\n".join(lines)


def _frame_name(frame: str) -> str:
    """``send (websockets/asyncio/connection.py:123)`` → ``send (websockets/asyncio/connection.py)``:
    lines apart, one function is one frame."""
    name, sep, where = frame.partition(" (")
    if not sep:
        return frame
    path = where.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-3:])
    return f"{name} ({short})"


def summarize(collapsed: str, name: str = "") -> ProfileSummary:
    """Top frames of a collapsed-stack text (``frame;frame;frame count`` per line)."""
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        leaf[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def shares(counter: Counter[str]) -> tuple[FrameShare, ...]:
        return tuple(FrameShare(f, n, n / total) for f, n in counter.most_common(40))

    return ProfileSummary(name, total, shares(leaf), shares(inclusive)) if total else \
        ProfileSummary(name, 0, (), ())


class Recording:
    """``py-spy record`` of each named pid for ``seconds``, into ``out_dir/<name>.txt``."""

    def __init__(self, pids: Mapping[str, int], seconds: float, out_dir: Path,
                 svg: tuple[str, ...] = (), rate: int = 100) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.paths = {name: out_dir / f"{name}.txt" for name in pids}
        self._processes: list[subprocess.Popen[bytes]] = []
        for name, pid in pids.items():
            outputs = [(self.paths[name], "raw")]
            if name in svg:
                outputs.append((out_dir / f"{name}.svg", "flamegraph"))
            for path, kind in outputs:
                self._processes.append(subprocess.Popen(
                    [str(PY_SPY), "record", "--nonblocking", "--gil", "--pid", str(pid), "--duration",
                     str(round(seconds)), "--rate", str(rate), "--format", kind, "-o", str(path)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def wait(self) -> dict[str, ProfileSummary]:
        for process in self._processes:
            process.wait()
        return {name: summarize(path.read_text(), name) for name, path in self.paths.items()
                if path.exists()}
