"""Build speed: essays per second for a full build of 1,000 essays (a tenth of
them carrying an image, so the image pipeline runs), then a one-essay
rebuild and a no-change `newsletter build` beside `newsletter --help`'s start-up
time, each measured in alternating pairs (help, build, help, build…) so that a
busy machine slows both alike. Prints figures only.

Goals: at least 200 essays per second on a 2-core machine; a no-change build
within 1.5x of the start-up time (it never imports the renderer).

    python benchmarks/build.py [--essays N] [--pairs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.build import build  # noqa: E402
from newsletter.config import load_settings  # noqa: E402


IMAGES = 20  # distinct photographs shared by the essays that carry one; the first is large enough to be resized


def make_images(folder: Path) -> None:
    from PIL import Image, ImageDraw

    folder.mkdir()
    for n in range(IMAGES):
        width = 2400 if n == 0 else 800 + 20 * n
        image = Image.new("RGB", (width, width * 9 // 16), (240, 236, 228))
        draw = ImageDraw.Draw(image)
        for x in range(0, width, 30 + n):
            draw.rectangle([x, 0, x + 12, width], fill=(155, 61, 46))
        image.save(folder / f"photo-{n:02d}.jpg", "JPEG", quality=80)


def make_project(folder: Path, count: int) -> None:
    shutil.copy(REPO / "newsletter.toml", folder / "newsletter.toml")
    issues = folder / "issues"
    issues.mkdir()
    make_images(issues / "img")
    samples = sorted((REPO / "issues").glob("*.md"))
    for n in range(count):
        text = samples[n % len(samples)].read_text(encoding="utf-8")
        day = 1 + n % 28
        text = text.replace("date: 2017-", f"date: {2000 + n // 336}-", 1)
        text = text.replace("\n---\n", f"\n---\n\nGenerated essay number {n} (day {day}).\n", 1)
        if n % 10 == 0:
            text += f"\n![Photograph {n} of the meeting](img/photo-{n // 10 % IMAGES:02d}.jpg)\n"
        (issues / f"essay-{n:05d}.md").write_text(text, encoding="utf-8")


def wall(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def paired(help_command: list[str], build_command: list[str], cwd: Path, pairs: int,
           before_build: object = None) -> tuple[float, float, float]:
    """(median --help, median build, median of the per-pair ratios), measured A B A B."""
    helps, builds, ratios = [], [], []
    for n in range(pairs):
        a = wall(help_command, cwd)
        if callable(before_build):
            before_build(n)
        b = wall(build_command, cwd)
        helps.append(a)
        builds.append(b)
        ratios.append(b / a)
    return statistics.median(helps), statistics.median(builds), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--essays", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=11, help="help/build pairs per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_project(root, args.essays)
        settings = load_settings(root, environ={})
        start = time.perf_counter()
        report = build(settings)
        elapsed = time.perf_counter() - start
        assert report.ok and len(report.built) == args.essays, report.errors[:3]
        images = len(list((root / "build" / "images").iterdir()))
        print(f"full build: {args.essays} essays ({args.essays // 10} with an image, {images} images published) "
              f"in {elapsed:.2f} s = {args.essays / elapsed:.0f} essays/s (goal >= 200)")

        start = time.perf_counter()
        build(settings)
        print(f"no-change rebuild of {args.essays} essays: {time.perf_counter() - start:.2f} s")

        small = root / "small"
        small.mkdir()
        make_project(small, 7)
        newsletter = [sys.executable, "-m", "newsletter"]
        help_command = [*newsletter, "--help"]
        build_command = [*newsletter, "build"]
        wall(build_command, small)
        essay = small / "issues" / "essay-00003.md"

        def edit(n: int) -> None:
            essay.write_text(essay.read_text(encoding="utf-8") + f"\nEdit {n}.\n", encoding="utf-8")

        startup, rebuild, ratio = paired(help_command, build_command, small, args.pairs, edit)
        print(f"one-essay rebuild: {rebuild * 1000:.0f} ms beside `newsletter --help` {startup * 1000:.0f} ms; "
              f"ratio {ratio:.2f}x (median of {args.pairs} pairs)")

        # As an editor finds it later: the essays saved a while ago, one build since.
        past = time.time_ns() - 60 * 1_000_000_000
        for path in (small / "issues").iterdir():
            os.utime(path, ns=(past, past))
        wall(build_command, small)
        startup, unchanged, ratio = paired(help_command, build_command, small, args.pairs)
        print(f"no-change build: {unchanged * 1000:.0f} ms beside `newsletter --help` {startup * 1000:.0f} ms; "
              f"ratio {ratio:.2f}x (median of {args.pairs} pairs; goal <= 1.5x)")

        settings = load_settings(small, environ={})
        in_process = []
        for n in range(7):
            essay.write_text(essay.read_text(encoding="utf-8") + f"\nMore {n}.\n", encoding="utf-8")
            start = time.perf_counter()
            build(settings)
            in_process.append(time.perf_counter() - start)
        print(f"one-essay rebuild inside a running process (as `newsletter preview` does): "
              f"{statistics.median(in_process) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
