"""Sending speed, each path beside the bare library doing the same work, in one run.

- SendGrid: recipients/s through the real `sendgrid` client to a SendGrid-compatible
  server on 127.0.0.1, beside the bare client posting the same number of prebuilt
  1,000-recipient payloads. Goal: at least 40%. And the send's own peak RSS at
  10k and at --large (goal: within 10%).
- SMTP: recipients/s through a local aiosmtpd server, beside a bare smtplib loop
  sending the same prebuilt messages over one connection. Goal: at least 70%.
- Outbox: files/s, beside writing the same prebuilt bytes durably (temporary
  file, fsync, rename). Goal: at least 60%.

Each side runs in a fresh child process, the two sides in pairs (A B A B …),
and the ratio printed is the median of the per-pair ratios: on a shared
machine, load shifts between runs but rarely within a pair. Servers run in
their own processes, so they do not share our CPU. Prints figures only.

    python benchmarks/send.py [--only smtp,outbox,sendgrid] [--count 10000] [--large 100000] [--pairs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.sendgrid_server import API_KEY  # noqa: E402  (the key the loopback server accepts)

PREBUILT = 100  # distinct prebuilt messages the bare loops cycle through (10k would not fit in memory)


# -- servers, each in its own process -------------------------------------------
def serve_sendgrid() -> None:
    from tests.sendgrid_server import SendGridServer

    server = SendGridServer()
    server.validator = None  # validation is the tests' job; here it would only measure jsonschema

    def count_only(*_args: Any) -> None:
        return None

    server.accepted = type("Sink", (), {"append": staticmethod(count_only)})()  # keep nothing: memory stays flat
    server.start()
    print(server.host, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()


def serve_smtp() -> None:
    from aiosmtpd.controller import Controller

    from tests.smtp_server import free_port

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"smtp://127.0.0.1:{port}", flush=True)
    sys.stdin.read()
    controller.stop()


# -- measuring inside a child ---------------------------------------------------
def reset_peak() -> float:
    """Reset the kernel's peak-RSS counter (VmHWM) to now, so the next peak is the send's own; returns RSS MiB."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return status_mib("VmRSS")


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def report(seconds: float, before: float = 0.0) -> None:
    peak = status_mib("VmHWM")
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak, "growth_mib": peak - before}))


def project(root: Path, count: int, env: dict[str, str]) -> tuple[Any, Any, Any]:
    """A newsletter with `count` readers and the sample issue queued: (settings, store, issue)."""
    from sqlalchemy import insert

    from newsletter.build import build, ready_issue
    from newsletter.config import load_settings
    from newsletter.sends import queue
    from newsletter.store import open_store
    from newsletter.store.schema import subscribers, utcnow

    shutil.copytree(REPO / "issues", root / "issues")
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    settings = load_settings(root, environ={"NEWSLETTER_SECRET": "benchmark-secret", **env})
    store = open_store(settings)
    now = utcnow()
    with store.begin() as conn:
        for start in range(0, count, 10_000):
            conn.execute(insert(subscribers), [
                dict(email=f"reader{n}@example.net", email_key=f"reader{n}@example.net", name=f"Reader {n}", attributes={},
                     status="active", source="benchmark", created_at=now, updated_at=now, status_changed_at=now)
                for n in range(start, min(count, start + 10_000))
            ])
    _, issue = ready_issue(settings, "say-what-you-mean", build(settings))
    with store.begin() as conn:
        queue(conn, issue.slug, issue.subject, issue.html, issue.text, utcnow())
    return settings, store, issue


def ours(count: int, env: dict[str, str]) -> None:
    """The scheduler, as `newsletter scheduler --once` runs it, timed from claim to finish."""
    from newsletter.providers import get_provider
    from newsletter.scheduler import Scheduler

    with tempfile.TemporaryDirectory() as tmp:
        settings, store, _ = project(Path(tmp), count, env)
        scheduler = Scheduler(store, settings, get_provider(settings), settings.secret)
        before = reset_peak()
        start = time.perf_counter()
        result = scheduler.run_once()
        elapsed = time.perf_counter() - start
        assert result.sent == count, result
        report(elapsed, before)


def prebuilt(settings: Any, issue: Any) -> list[bytes]:
    from newsletter.messages import Recipient, personal_copy

    link = settings.base_url + "/unsubscribe?token="
    return [personal_copy(settings, issue, Recipient(f"reader{n}@example.net", f"Reader {n}", f"{link}{n}:say.{'x' * 27}", n, n))
            for n in range(PREBUILT)]


def bare_smtp(count: int, url: str) -> None:
    import smtplib

    with tempfile.TemporaryDirectory() as tmp:
        settings, _, issue = project(Path(tmp), 1, {})
        messages = prebuilt(settings, issue)
        host, port = url.removeprefix("smtp://").split(":")
        start = time.perf_counter()
        with smtplib.SMTP(host, int(port)) as server:
            for n in range(count):
                server.sendmail(settings.sender_address, [f"reader{n}@example.net"], messages[n % PREBUILT])
        report(time.perf_counter() - start)


def bare_outbox(count: int, _target: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings, _, issue = project(Path(tmp), 1, {})
        messages = prebuilt(settings, issue)
        folder = Path(tmp) / "bare"
        folder.mkdir()
        start = time.perf_counter()
        for n in range(count):
            path, partial = folder / f"{n:08d}.eml", folder / f".{n:08d}.eml.tmp"
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            os.write(fd, messages[n % PREBUILT])
            os.fsync(fd)
            os.close(fd)
            os.replace(partial, path)
        report(time.perf_counter() - start)


def bare_sendgrid(count: int, host: str) -> None:
    from sendgrid import SendGridAPIClient

    client = SendGridAPIClient(api_key=API_KEY, host=host)
    html = (REPO / "tests" / "golden" / "2017-02-13-say-what-you-mean.email.html").read_text(encoding="utf-8")
    text = (REPO / "tests" / "golden" / "2017-02-13-say-what-you-mean.email.txt").read_text(encoding="utf-8")
    link = "http://127.0.0.1:8000/unsubscribe?token=" + "x" * 90
    payloads = [{
        "personalizations": [{
            "to": [{"email": f"reader{n + i}@example.net"}],
            "substitutions": {"%%unsubscribe_url%%": link},
            "headers": {"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
            "custom_args": {"send_id": "1", "delivery_id": str(n + i)},
        } for i in range(min(1000, count - n))],
        "from": {"email": "editor@example.com"}, "subject": "Benchmark",
        "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
    } for n in range(0, count, 1000)]
    start = time.perf_counter()
    for body in payloads:
        client.client.mail.send.post(request_body=body)
    report(time.perf_counter() - start)


def env_for(path: str, target: str) -> dict[str, str]:
    if path == "sendgrid":
        return {"NEWSLETTER_PROVIDER": "sendgrid", "SENDGRID_API_KEY": API_KEY, "NEWSLETTER_SENDGRID_HOST": target,
                "NEWSLETTER_BATCH_SIZE": "1000"}
    if path == "smtp":
        return {"NEWSLETTER_PROVIDER": "smtp", "NEWSLETTER_SMTP_URL": target, "NEWSLETTER_BATCH_SIZE": "1000"}
    return {"NEWSLETTER_PROVIDER": "outbox", "NEWSLETTER_BATCH_SIZE": "1000"}


BARE: dict[str, Callable[[int, str], None]] = {"sendgrid": bare_sendgrid, "smtp": bare_smtp, "outbox": bare_outbox}
GOALS = {"sendgrid": 0.40, "smtp": 0.70, "outbox": 0.60}
BARE_NAMES = {"sendgrid": "bare sendgrid client", "smtp": "bare smtplib loop", "outbox": "bare durable writes"}


# -- the parent -------------------------------------------------------------------
def child(side: str, path: str, count: int, target: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", side, path, str(count), target], check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def paired(path: str, count: int, target: str, pairs: int) -> dict[str, float]:
    ratios, rates, bare_rates = [], [], []
    for _ in range(pairs):
        a = child("ours", path, count, target)
        b = child("bare", path, count, target)
        rates.append(count / a["seconds"])
        bare_rates.append(count / b["seconds"])
        ratios.append(b["seconds"] / a["seconds"])
    return {"ratio": statistics.median(ratios), "rate": statistics.median(rates), "bare": statistics.median(bare_rates),
            "low": min(ratios), "high": max(ratios)}


def server(flag: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, __file__, flag], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="smtp,outbox,sendgrid", help="which paths, comma-separated")
    parser.add_argument("--count", type=int, default=10_000, help="recipients for SMTP and the outbox (default 10,000)")
    parser.add_argument("--large", type=int, default=100_000, help="recipients for SendGrid (default 100,000)")
    parser.add_argument("--pairs", type=int, default=3, help="A B pairs per path (default 3)")
    parser.add_argument("--serve-sendgrid", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-smtp", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sendgrid:
        return serve_sendgrid()
    if args.serve_smtp:
        return serve_smtp()
    if args.child:
        side, path, count, target = args.child
        if side == "ours":
            return ours(int(count), env_for(path, target))
        return BARE[path](int(count), target)

    for path in args.only.split(","):
        process, target = server(f"--serve-{path}") if path != "outbox" else (None, "")
        try:
            count = args.large if path == "sendgrid" else args.count
            figures = paired(path, count, target, args.pairs)
            memory = {n: child("ours", path, n, target) for n in (10_000, args.large)} if path == "sendgrid" else {}
        finally:
            if process is not None:
                assert process.stdin is not None
                process.stdin.close()
                process.wait()
        print(f"{path}: newsletter {figures['rate']:,.0f} recipients/s, {BARE_NAMES[path]} {figures['bare']:,.0f}/s "
              f"over {count:,} recipients")
        print(f"{path}: ratio {figures['ratio']:.0%} (median of {args.pairs} pairs, {figures['low']:.0%}–{figures['high']:.0%}; "
              f"goal >= {GOALS[path]:.0%})")
        for n, r in memory.items():
            print(f"{path}: the send's peak RSS at {n:>7,}: {r['peak_rss_mib']:.1f} MiB (+{r['growth_mib']:.1f} MiB during the send)")
        if memory:
            small, large = memory[10_000], memory[args.large]
            growth = large["peak_rss_mib"] / small["peak_rss_mib"] - 1
            print(f"{path}: peak RSS growth from 10,000 to {args.large:,}: {growth:+.1%} (goal within 10%)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
