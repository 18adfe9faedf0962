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

- PostgreSQL (--postgres): 1,000,000 readers through the SendGrid path with no
  latency, beside the bare client. Goals: at least 40% of its rate; freezing the
  list at most 2 s; the send's peak RSS within 10% of the --large run's, on
  PostgreSQL too. Also prints the wait from the scheduler's start to its first
  request (queue to first message). Each run sends to a fresh copy of a list
  made once in a database of its own, all dropped at the end.

    python benchmarks/send.py [--only smtp,outbox,sendgrid] [--count 10000] [--large 100000] [--pairs 3]
    python benchmarks/send.py --only postgres --pairs 2            # the million alone
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

    def payload(n: int) -> dict[str, Any]:
        return {
            "personalizations": [{
                "to": [{"email": f"reader{n + i}@example.net"}],
                "substitutions": {"%%unsubscribe_url%%": link},
                "headers": {"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
                "custom_args": {"send_id": "1", "delivery_id": str(n + i)},
            } for i in range(min(1000, count - n))],
            "from": {"email": "editor@example.com"}, "subject": "Benchmark",
            "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
        }

    # Each payload is built before its request and outside the clock: a million would not fit in memory at once.
    elapsed = 0.0
    for n in range(0, count, 1000):
        body = payload(n)
        start = time.perf_counter()
        client.client.mail.send.post(request_body=body)
        elapsed += time.perf_counter() - start
    report(elapsed)


# -- a million readers on PostgreSQL ---------------------------------------------
POSTGRES_ADMIN = os.environ.get("BENCHMARK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_admin() -> Any:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_ADMIN)
    return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                           dbname=url.database, autocommit=True)


def postgres_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(POSTGRES_ADMIN).set(database=name).render_as_string(hide_password=False)


def postgres_list(name: str, count: int, target: str) -> None:
    """A database `name` with `count` active readers and the sample issue queued, vacuumed as a list long imported is."""
    from sqlalchemy import text

    with postgres_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    with tempfile.TemporaryDirectory() as tmp:
        _, store, _ = project(Path(tmp), 0, {**env_for("sendgrid", target), "NEWSLETTER_DATABASE_URL": postgres_url(name)})
        with store.begin() as conn:
            conn.execute(text(
                "INSERT INTO subscribers (email, email_key, name, attributes, status, source, created_at, updated_at, "
                "status_changed_at) SELECT 'reader' || n || '@example.net', 'reader' || n || '@example.net', 'Reader ' || n, "
                "'{}', 'active', 'benchmark', now(), now(), now() FROM generate_series(0, :last) AS n"), {"last": count - 1})
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        store.dispose()


def postgres_copy(template: str, name: str) -> None:
    with postgres_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')


def postgres_drop(*names: str) -> None:
    with postgres_admin() as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ours_postgres(count: int, env: dict[str, str]) -> None:
    """The scheduler on a copy of a PostgreSQL list: the whole run, the freeze, and the wait for the first request."""
    from newsletter.config import load_settings
    from newsletter.providers import get_provider
    from newsletter.scheduler import Scheduler
    from newsletter.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
        settings = load_settings(root, environ={"NEWSLETTER_SECRET": "benchmark-secret", **env})
        store = open_store(settings)
        scheduler = Scheduler(store, settings, get_provider(settings), settings.secret)
        marks: dict[str, float] = {}
        start_sends, send = scheduler._start, scheduler.provider.send

        def timed_start(*args: Any) -> None:
            began = time.perf_counter()
            start_sends(*args)
            marks["freeze"] = time.perf_counter() - began

        def first_send(*args: Any) -> Any:
            marks.setdefault("first", time.perf_counter() - start)
            return send(*args)

        scheduler._start = timed_start  # type: ignore[method-assign,assignment]  # timing the freeze from outside
        scheduler.provider.send = first_send  # type: ignore[method-assign,assignment]  # timing the first request
        before = reset_peak()
        start = time.perf_counter()
        result = scheduler.run_once()
        elapsed = time.perf_counter() - start
        assert result.sent == count, result
        store.dispose()
        peak = status_mib("VmHWM")
        print(json.dumps({"seconds": elapsed, "freeze": marks["freeze"], "first": marks["first"], "peak_rss_mib": peak,
                          "growth_mib": peak - before}))


def postgres_million(count: int, small: int, target: str, pairs: int) -> None:
    """The SendGrid path on PostgreSQL at `count` readers beside the bare client, and its peak memory beside `small`."""
    import uuid

    tag = uuid.uuid4().hex[:8]
    large_list, small_list = f"newsletter_bench_{tag}_{count}", f"newsletter_bench_{tag}_{small}"
    copies: list[str] = []

    def run(template: str, n: int) -> dict[str, float]:
        name = f"{template}_{len(copies)}"
        copies.append(name)
        postgres_copy(template, name)
        try:
            env = {**env_for("sendgrid", target), "NEWSLETTER_DATABASE_URL": postgres_url(name)}
            return child("ours-postgres", "sendgrid", n, target, env)
        finally:
            postgres_drop(name)

    try:
        postgres_list(large_list, count, target)
        postgres_list(small_list, small, target)
        ours_runs, ratios, bare_rates = [], [], []
        for _ in range(pairs):
            a = run(large_list, count)
            b = child("bare", "sendgrid", count, target)
            ours_runs.append(a)
            bare_rates.append(count / b["seconds"])
            ratios.append(b["seconds"] / a["seconds"])
        small_run = run(small_list, small)
    finally:
        postgres_drop(large_list, small_list, *copies)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in ours_runs)

    print(f"postgres: newsletter {count / median('seconds'):,.0f} recipients/s ({median('seconds'):.1f} s), "
          f"bare sendgrid client {statistics.median(bare_rates):,.0f}/s over {count:,} recipients")
    print(f"postgres: ratio {statistics.median(ratios):.0%} (median of {pairs} pairs, {min(ratios):.0%}–{max(ratios):.0%}; goal >= 40%)")
    print(f"postgres: freezing {count:,}: {median('freeze'):.2f} s (median; {min(r['freeze'] for r in ours_runs):.2f}–"
          f"{max(r['freeze'] for r in ours_runs):.2f}; goal <= 2 s)")
    print(f"postgres: queue to first message: {median('first'):.2f} s (median)")
    large_peak = median("peak_rss_mib")
    for n, peak, growth in ((small, small_run["peak_rss_mib"], small_run["growth_mib"]), (count, large_peak, median("growth_mib"))):
        print(f"postgres: the send's peak RSS at {n:>9,}: {peak:.1f} MiB (+{growth:.1f} MiB during the send)")
    print(f"postgres: peak RSS growth from {small:,} to {count:,}: {large_peak / small_run['peak_rss_mib'] - 1:+.1%} (goal within 10%)")
    sys.stdout.flush()


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
def child(side: str, path: str, count: int, target: str, env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", side, path, str(count), target], check=True,
                         capture_output=True, text=True, env={**os.environ, **(env or {})}).stdout
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


def main() -> None:  # noqa: C901 - one branch per measured path, each a few lines
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="smtp,outbox,sendgrid", help="which paths, comma-separated (postgres: see --postgres)")
    parser.add_argument("--count", type=int, default=10_000, help="recipients for SMTP and the outbox (default 10,000)")
    parser.add_argument("--large", type=int, default=100_000, help="recipients for SendGrid (default 100,000)")
    parser.add_argument("--pairs", type=int, default=3, help="A B pairs per path (default 3)")
    parser.add_argument("--postgres", type=int, nargs="?", const=1_000_000, default=0, metavar="COUNT",
                        help="also send to COUNT readers (default 1,000,000) on PostgreSQL through SendGrid, beside the bare "
                             "client, with the freeze, the wait for the first message and peak memory against --large "
                             "(a database of its own, at BENCHMARK_POSTGRES_URL's server, dropped afterwards)")
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
        if side == "ours-postgres":
            return ours_postgres(int(count), {**env_for(path, target), "NEWSLETTER_DATABASE_URL": os.environ["NEWSLETTER_DATABASE_URL"]})
        return BARE[path](int(count), target)

    paths = [p for p in args.only.split(",") if p]
    if args.postgres and "postgres" not in paths:
        paths.append("postgres")
    for path in paths:
        process, target = server(f"--serve-{'sendgrid' if path == 'postgres' else path}") if path != "outbox" else (None, "")
        try:
            if path == "postgres":
                postgres_million(args.postgres or 1_000_000, args.large, target, args.pairs)
                continue
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
