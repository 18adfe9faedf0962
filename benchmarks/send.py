"""Sending speed: recipients per second through the real `sendgrid` client to a
SendGrid-compatible server on 127.0.0.1, beside the bare client posting the same
number of prebuilt 1,000-recipient payloads; and peak RSS at 10k and 100k.
Prints figures only. Goals: at least 40% of the bare client's rate; peak RSS at
100k within 10% of that at 10k.

    python benchmarks/send.py [--large 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.sendgrid_server import API_KEY  # noqa: E402  (the key the loopback server accepts)


def serve() -> None:
    """A SendGrid-compatible server in its own process, so it does not share our CPU."""
    from tests.sendgrid_server import SendGridServer

    server = SendGridServer()
    server.validator = None  # validation is the tests' job; here it would only measure jsonschema

    def count_only(*_args):  # noqa: ANN002, ANN202
        return None

    server.accepted = type("Sink", (), {"append": staticmethod(count_only)})()  # keep nothing: memory stays flat
    server.start()
    print(server.host, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare(count: int, host: str) -> None:
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
        } for i in range(1000)],
        "from": {"email": "editor@example.com"}, "subject": "Benchmark",
        "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
    } for n in range(0, count, 1000)]
    start = time.perf_counter()
    for body in payloads:
        client.client.mail.send.post(request_body=body)
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mib": peak_mib()}))


def send(count: int, host: str) -> None:
    from sqlalchemy import insert

    from newsletter.build import build, ready_issue
    from newsletter.config import load_settings
    from newsletter.providers import get_provider
    from newsletter.scheduler import Scheduler
    from newsletter.sends import queue
    from newsletter.store import open_store
    from newsletter.store.schema import subscribers, utcnow

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("issues",):
            shutil.copytree(REPO / name, root / name)
        shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
        env = {"NEWSLETTER_PROVIDER": "sendgrid", "SENDGRID_API_KEY": API_KEY, "NEWSLETTER_SENDGRID_HOST": host,
               "NEWSLETTER_BATCH_SIZE": "1000", "NEWSLETTER_SECRET": "benchmark-secret"}
        settings = load_settings(root, environ=env)
        store = open_store(settings)
        now = utcnow()
        with store.begin() as conn:
            for start in range(0, count, 10_000):
                conn.execute(insert(subscribers), [
                    dict(email=f"reader{n}@example.net", email_key=f"reader{n}@example.net", name="", attributes={},
                         status="active", source="benchmark", created_at=now, updated_at=now, status_changed_at=now)
                    for n in range(start, min(count, start + 10_000))
                ])
        report = build(settings)
        essay, issue = ready_issue(settings, "say-what-you-mean", report)
        with store.begin() as conn:
            queue(conn, essay.slug, issue.subject, issue.html, issue.text, utcnow())
        scheduler = Scheduler(store, settings, get_provider(settings), settings.secret)
        start = time.perf_counter()
        result = scheduler.run_once()
        elapsed = time.perf_counter() - start
        assert result.sent == count, result
        print(json.dumps({"seconds": elapsed, "peak_rss_mib": peak_mib()}))


def child(mode: str, count: int, host: str) -> dict:
    out = subprocess.run([sys.executable, __file__, f"--{mode}", str(count), host], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--send", type=int, help=argparse.SUPPRESS)
    parser.add_argument("host", nargs="?")
    args = parser.parse_args()
    if args.serve:
        return serve()
    if args.bare:
        return bare(args.bare, args.host)
    if args.send:
        return send(args.send, args.host)

    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    host = server.stdout.readline().strip()
    try:
        small, large = 10_000, args.large
        ours = {small: child("send", small, host)}
        # Best of three for both rates: the loopback timings are noisy on a shared machine.
        runs = [child("send", large, host) for _ in range(3)]
        ours[large] = min(runs, key=lambda r: r["seconds"])
        theirs = min((child("bare", large, host) for _ in range(3)), key=lambda r: r["seconds"])
    finally:
        server.stdin.close()
        server.wait()
    ours_rate = large / ours[large]["seconds"]
    bare_rate = large / theirs["seconds"]
    print(f"newsletter scheduler: {ours_rate:,.0f} recipients/s over {large:,} recipients")
    print(f"bare sendgrid client: {bare_rate:,.0f} recipients/s posting {large // 1000} prebuilt payloads")
    print(f"ratio: {ours_rate / bare_rate:.0%} of the bare client (goal >= 40%; best of 3 runs each)")
    for n, r in ours.items():
        print(f"peak RSS sending to {n:>7,}: {r['peak_rss_mib']:.1f} MiB")
    growth = ours[large]["peak_rss_mib"] / ours[small]["peak_rss_mib"] - 1
    print(f"peak RSS growth from {small:,} to {large:,}: {growth:+.1%} (goal within 10%)")


if __name__ == "__main__":
    main()
