"""Serving a build: only the files its manifest names, never whatever else lies in the folder.

An output folder collects strays (an editor's notes, another tool's build/lib,
a half-written file); none of them is ever served. The manifest is read again
whenever it changes, so a new build is served without a restart.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from ..build import MANIFEST, published_files

mimetypes.add_type("application/atom+xml", ".xml")  # the only XML a build publishes is its feed
mimetypes.add_type("image/webp", ".webp")


def _route_path(scope: Scope) -> str:
    """The path below where this app is mounted (Mount keeps the full path and extends root_path)."""
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):]
    return path


class PublishedFiles:
    """An ASGI app serving `folder`'s published files; '/' and '/<slug>/' serve their index.html."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._stamp: tuple[int, int] | None = None
        self._files: frozenset[str] = frozenset()

    def files(self) -> frozenset[str]:
        try:
            stat = (self.folder / MANIFEST).stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            return frozenset()
        if stamp != self._stamp:
            self._files, self._stamp = published_files(self.folder), stamp
        return self._files

    def resolve(self, path: str) -> tuple[str | None, bool]:
        """The published file `path` names, and whether it needs a trailing slash first."""
        name = path.lstrip("/")
        files = self.files()
        if name == "" or name.endswith("/"):
            index = name + "index.html"
            return (index if index in files else None), False
        if name in files:
            return name, False
        return None, f"{name}/index.html" in files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response: Response
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405)
        else:
            name, needs_slash = self.resolve(_route_path(scope))
            if name is not None:
                response = FileResponse(self.folder / name, media_type=mimetypes.guess_type(name)[0] or "application/octet-stream")
            elif needs_slash:
                response = RedirectResponse(scope["path"] + "/", status_code=301)
            else:
                raise HTTPException(404)  # the app's own styled page answers
        await response(scope, receive, send)
