"""Sending at a provider's real pace: one scheduler at `concurrency` 1, 4 and 8.

- SMTP: recipients/s through a local aiosmtpd server that takes 20 ms over each
  message (without blocking its other connections), at concurrency 1, 4 and 8.
  Goal: at 8, at least 6x the rate at 1.
- SendGrid: recipients/s through the loopback SendGrid-compatible server with
  100 ms of latency per request (100 recipients a request), at 1, 4 and 8.
  Goal: at 8, at least 6x the rate at 1.
- Rate limit: with `max_per_second` set, the measured rate over the send.
  Goal: within 5% of the limit.

Each run is a fresh child process; the concurrencies run in rounds (1, 4, 8,
1, 4, 8 …) so that a busy machine slows all alike, and each ratio is the
median of the per-round ratios. Servers run in their own processes. Prints
figures only.

    python benchmarks/concurrency.py [--only smtp,sendgrid,limit] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from send import env_for, project, report  # noqa: E402  (the send benchmark's newsletter and figures)

SMTP_LATENCY = 0.020  # seconds the server takes over each message
SENDGRID_LATENCY = 0.100  # seconds per request
LEVELS = (1, 4, 8)
# SendGrid: 100 requests, so each of 8 workers makes a dozen; at 4,000 it made five, and the start
# (connections opened, claims taken one at a time) weighed as much as a whole request's wait.
COUNTS = {"smtp": 400, "sendgrid": 10000, "limit": 500}
LIMIT = 50.0  # max_per_second for the rate-limit run: well under what the machine can do


def serve_slow_smtp() -> None:
    import asyncio

    from aiosmtpd.controller import Controller

    from tests.smtp_server import free_port

    class Slow:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            await asyncio.sleep(SMTP_LATENCY)
            return "250 OK"

    port = free_port()
    controller = Controller(Slow(), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"smtp://127.0.0.1:{port}", flush=True)
    sys.stdin.read()
    controller.stop()


def serve_slow_sendgrid() -> None:
    from tests.sendgrid_server import SendGridServer

    server = SendGridServer()
    server.validator = None  # validation is the tests' job
    server.delay = SENDGRID_LATENCY
    server.start()
    print(server.host, flush=True)
    sys.stdin.read()
    server.stop()


def ours(path: str, count: int, concurrency: int, target: str) -> None:
    """The scheduler, as `newsletter scheduler --once` runs it, timed over run_once."""
    from newsletter.providers import get_provider
    from newsletter.scheduler import Scheduler

    provider = "smtp" if path in ("smtp", "limit") else "sendgrid"
    env = {**env_for(provider, target), "NEWSLETTER_CONCURRENCY": str(concurrency),
           "NEWSLETTER_BATCH_SIZE": "100"}
    if path == "limit":
        env["NEWSLETTER_MAX_PER_SECOND"] = str(LIMIT)
    with tempfile.TemporaryDirectory() as tmp:
        settings, store, _ = project(Path(tmp), count, env)
        scheduler = Scheduler(store, settings, get_provider(settings), settings.secret)
        start = time.perf_counter()
        result = scheduler.run_once()
        elapsed = time.perf_counter() - start
        assert result.sent == count, result
        report(elapsed)


def child(path: str, count: int, concurrency: int, target: str) -> float:
    """Recipients per second of one run in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--child", path, str(count), str(concurrency), target], check=True,
                         capture_output=True, text=True).stdout
    seconds: float = json.loads(out.strip().splitlines()[-1])["seconds"]
    return count / seconds


def server(flag: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, __file__, flag], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def stop(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    process.wait()


def levels(path: str, target: str, rounds: int) -> None:
    rates: dict[int, list[float]] = {level: [] for level in LEVELS}
    ratios = []
    for _ in range(rounds):
        here = {level: child(path, COUNTS[path], level, target) for level in LEVELS}
        for level, rate in here.items():
            rates[level].append(rate)
        ratios.append(here[LEVELS[-1]] / here[LEVELS[0]])
    figures = ", ".join(f"{level}: {statistics.median(r):,.0f}/s" for level, r in rates.items())
    print(f"{path}: {COUNTS[path]:,} recipients at concurrency {figures}")
    print(f"{path}: concurrency {LEVELS[-1]} is {statistics.median(ratios):.1f}x concurrency {LEVELS[0]} "
          f"(median of {rounds} rounds, {min(ratios):.1f}x–{max(ratios):.1f}x; goal >= 6x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="smtp,sendgrid,limit", help="which runs, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 1, 4, 8 (default 2)")
    parser.add_argument("--serve", choices=["smtp", "sendgrid"], help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve_slow_smtp() if args.serve == "smtp" else serve_slow_sendgrid()
    if args.child:
        path, count, concurrency, target = args.child
        return ours(path, int(count), int(concurrency), target)

    for path in args.only.split(","):
        if path == "limit":  # against a server with no latency of its own, so only the limit sets the pace
            process, target = server_fast()
        else:
            process, target = server(f"--serve={path}")
        try:
            if path == "limit":
                rate = statistics.median(child(path, COUNTS[path], 4, target) for _ in range(args.rounds))
                print(f"limit: max_per_second {LIMIT:g} over {COUNTS[path]:,} recipients at concurrency 4: "
                      f"{rate:,.1f}/s, {rate / LIMIT - 1:+.1%} (goal within 5%)")
            else:
                levels(path, target, args.rounds)
        finally:
            stop(process)
        sys.stdout.flush()


def server_fast() -> tuple[subprocess.Popen[str], str]:
    """The send benchmark's SMTP sink: answers at once."""
    process = subprocess.Popen([sys.executable, str(Path(__file__).parent / "send.py"), "--serve-smtp"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


if __name__ == "__main__":
    main()
