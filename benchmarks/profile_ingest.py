"""Where ingestion's time goes: py-spy on the server and its writer process under wrk.

Starts ``nilemetrics serve`` on a throw-away database, starts sessions as the
shop's client does, warms up, then samples the server process and the writer
process with py-spy (``pip install py-spy``) while wrk posts page visits at 64
connections, the load of ``benchmarks/ingest.py``. Prints, per process, its
samples against one thread's possible samples (py-spy leaves out threads it sees
idle, but a thread blocked in a queue's ``get`` still counts) and the functions
with the most samples, inclusive and as the innermost frame.

    python -m benchmarks.profile_ingest [--db sqlite|postgres] [--duration 10]

py-spy slows the sampled processes a little; the rate printed is for comparison
with another profiled run, not with ``benchmarks/ingest.py``.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.ingest import loaded_server, wrk

RATE = 200  # samples per second


def summary(path: Path, seconds: int, top: int) -> str:
    """Busy share, then the top inclusive and innermost frames of a py-spy raw file."""
    total = 0
    inner: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        inner[frames[-1]] += n
        # One count per function per stack (recursion), line numbers dropped.
        for name in {re.sub(r":\d+\)", ")", frame) for frame in frames}:
            inclusive[name] += n
    out = [f"{total} samples, {total / (seconds * RATE):.0%} of one thread's possible samples"]
    out.append("  inclusive:")
    out += [f"    {n / total:6.1%} {k[:140]}" for k, n in inclusive.most_common(top)]
    out.append("  innermost:")
    out += [f"    {n / total:6.1%} {k[:140]}" for k, n in inner.most_common(top)]
    return "\n".join(out)


def main() -> None:
    """Profile one server under load; print where its processes spend their samples."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    for tool in ("wrk", "py-spy"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (wrk: apt-get install wrk; py-spy: pip install py-spy)")
    tmp = Path(tempfile.mkdtemp(prefix="nm-prof-"))
    try:
        with loaded_server(args.db, args.pg_url, args.connections) as live:
            samplers = {
                name: subprocess.Popen(
                    ["py-spy", "record", "-p", str(pid), "-d", str(args.duration),
                     "-r", str(RATE), "-f", "raw", "-o", str(tmp / f"{name}.txt")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for name, pid in (("server", live.server_pid), ("writer", live.writer_pid))
            }
            result = wrk(live.base, args.duration, args.connections, 1, live.wrk_env)
            for sampler in samplers.values():
                sampler.wait(timeout=60)
        print(f"{args.db}: {result['rps']:.0f} req/s under py-spy, p50 {result['p50_ms']:.2f} ms, "
              f"p99 {result['p99_ms']:.2f} ms")
        for name in samplers:
            print(f"\n{name} process: {summary(tmp / f'{name}.txt', args.duration, args.top)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
