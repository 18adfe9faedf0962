"""An essay's images: found relative to the essay, published under a content-hashed
name, linked absolutely (mail clients cannot load relative images) and sized for
the email's column (Outlook shows an image without width at its full size).
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from markdown_it.token import Token

from .atomic import write_atomic
from .essays import Essay, EssayError, EssayWarning

COLUMN = 600
# What an image may fill: the column less the email's 40 px padding each side.
CONTENT_WIDTH = 520
# Twice the column serves sharp images to high-density screens; far above that is only weight.
RETINA_WIDTH = 2 * COLUMN
RESIZE_ABOVE = 3 * COLUMN
IMAGES_DIR = "images"
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp"}
_SAFE = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class PlacedImage:
    """One image as published: where it comes from, its name under the output folder, its size in the email."""

    source: Path
    name: str  # images/<stem>-<hash><ext>
    width: int
    height: int
    resize: bool  # the published file is scaled down to RETINA_WIDTH


def is_external(src: str) -> bool:
    parts = urlsplit(src)
    return bool(parts.scheme or parts.netloc)


def line_of_text(essay: Essay, token: Token, needle: str) -> int | None:
    """The file line of `needle` inside the block `token` maps to."""
    if not token.map:
        return None
    lines = essay.body.splitlines()
    for number in range(token.map[0], min(token.map[1], len(lines))):
        if needle in lines[number]:
            return essay.line_of(number)
    return essay.line_of(token.map[0])


# What reading an image file told us, by (path, mtime, size): essays share pictures, and
# the archive reads every essay again.
_seen: dict[tuple[Path, int, int], tuple[str, int, int, bool, str]] = {}


def _read(path: Path) -> tuple[str, int, int, bool, str] | None:
    """(format, width, height, animated, content digest), or None if it is no image Pillow reads."""
    from PIL import Image, UnidentifiedImageError

    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _seen:
        data = path.read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as image:
                fmt, (width, height) = image.format or "", image.size
                animated = getattr(image, "n_frames", 1) > 1
        except (UnidentifiedImageError, OSError):
            return None
        _seen[key] = (fmt, width, height, animated, hashlib.sha256(data).hexdigest()[:16])
    return _seen[key]


def _inspect(essay: Essay, src: str, line: int | None) -> PlacedImage:
    path = (essay.path.parent / unquote(urlsplit(src).path)).resolve()
    try:
        found = _read(path)
    except OSError:
        raise EssayError(
            essay.path, line,
            f"image '{src}' not found (looked for {path}); put the file there or fix the path, which is relative to the essay",
        ) from None
    if found is None:
        raise EssayError(essay.path, line, f"image '{src}' is not a PNG, JPEG, GIF or WebP image; save it as one of those")
    fmt, width, height, animated, digest = found
    if fmt not in FORMATS or width < 1 or height < 1:
        raise EssayError(essay.path, line, f"image '{src}' is {fmt or 'an unknown format'}; mail clients need PNG, JPEG, GIF or WebP")
    resize = width > RESIZE_ABOVE and not animated
    stem = _SAFE.sub("-", path.stem.lower()).strip("-")[:40] or "image"
    shown = min(width, CONTENT_WIDTH)
    return PlacedImage(
        source=path,
        name=f"{IMAGES_DIR}/{stem}-{digest}{'-' + str(RETINA_WIDTH) if resize else ''}{FORMATS[fmt]}",
        width=shown,
        height=max(1, round(height * shown / width)),
        resize=resize,
    )


def place_images(essay: Essay, tokens: list[Token], site_url: str) -> tuple[list[PlacedImage], list[EssayWarning]]:
    """Point every local image in `tokens` at its published name, with width and height.

    Raises EssayError (essay and line) for an image that is missing or unreadable.
    """
    placed: list[PlacedImage] = []
    warnings: list[EssayWarning] = []
    for block in tokens:
        for child in block.children or []:
            if child.type != "image":
                continue
            src = str(child.attrs.get("src", ""))
            line = line_of_text(essay, block, src)
            if not child.content.strip():
                warnings.append(EssayWarning(
                    essay.path, line, f"image '{src}' has no alt text; write ![what it shows]({src}) for readers who cannot see it"))
            if is_external(src):
                continue  # the writer's own hosting; `newsletter check` asks for its size
            image = _inspect(essay, src, line)
            placed.append(image)
            child.attrs["src"] = f"{site_url}/{image.name}"
            child.attrs["width"] = str(image.width)
            child.attrs["height"] = str(image.height)
    return placed, warnings


def publish(images: list[PlacedImage], output: Path) -> None:
    """Write each image under its content-hashed name unless it is there already."""
    for image in images:
        target = output / image.name
        if target.is_file():
            continue  # the name is the content's hash
        data = image.source.read_bytes()
        if image.resize:
            data = _scaled_down(data)
        write_atomic(target, data)


def _scaled_down(data: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        fmt = image.format or "PNG"
        height = max(1, round(image.height * RETINA_WIDTH / image.width))
        small = image.resize((RETINA_WIDTH, height), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if fmt == "JPEG":
            small.save(out, fmt, quality=85, optimize=True)
        else:
            small.save(out, fmt)
        return out.getvalue()
