"""The gallery's HTTP side: a Starlette app behind a token, serving results, thumbnails and its own page.

Access: the URL `imgd web` prints carries a random token; the first visit trades it for an HttpOnly,
SameSite=Strict cookie and is redirected to the bare URL, and any request without that cookie gets
403. Files leave only by catalog id (see backend.py), as thumbnails made by the shared cache or,
for the original, after checking it is still a regular file the catalog lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import mimetypes
import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from imgd.daemon.api.thumbnails import GRID_SIDE, VIEW_SIDE, ThumbnailCache
from imgd.daemon.errors import ImageReadError, ImgdError
from imgd.daemon.ingest import imaging
from imgd.daemon.protocol import Options, RequestError, Term
from imgd.daemon.store import places
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .backend import Backend, Hit, content_of, parse_options, parse_query, said

STATIC = Path(__file__).parent / "static"
PAGE = 24  # results a page: one screenful of the grid
MAX_RESULTS = 1000  # the daemon's own cap on k
DUPE_PAGE = 30  # duplicate groups a page: each is a row of thumbnails
MAX_UPLOAD = 20 << 20  # a query image: a large phone photo fits, a video does not
SECURITY_HEADERS = {
    # Everything comes from imgd itself: no CDN, no inline script, no framing.
    "content-security-policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def cookie_name(port: int) -> str:
    """Cookies ignore ports: two galleries on one host must not overwrite each other's."""
    return f"imgd_token_{port}"


class TokenGate:
    """ASGI middleware: the token in the query becomes a cookie; without the cookie, 403."""

    def __init__(self, app: ASGIApp, token: str, port: int) -> None:
        self.app = app
        self.token = token.encode()
        self.cookie = cookie_name(port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        offered = request.query_params.get("token")
        if offered is not None and secrets.compare_digest(offered.encode(), self.token):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(self.cookie, self.token.decode(), httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return
        held = request.cookies.get(self.cookie, "")
        if not secrets.compare_digest(held.encode(), self.token):
            denied = PlainTextResponse(
                "403: open the gallery through the URL `imgd web` printed (it carries the access token).\n",
                status_code=403,
            )
            await denied(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.decode().lower() for name, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _hits_page(hits: list[Hit], offset: int, limit: int) -> dict[str, Any]:
    page = hits[offset : offset + limit]
    return {
        "hits": [
            {
                "id": h.id,
                "score": round(h.score, 4),
                "name": os.path.basename(h.path),
                "width": h.width,
                "height": h.height,
                **({"sibling": os.path.basename(h.sibling)} if h.sibling else {}),
                **({"siblings": [os.path.basename(s) for s in h.siblings]} if h.siblings else {}),
                **({"time": h.time} if h.time is not None else {}),  # a video: its best frame's time
                **({"words": list(h.words)} if h.words else {}),
            }
            for h in page
        ],
        "more": len(hits) > offset + limit,
    }


def _seconds(request: Request) -> float:
    """`t`, a video's time in seconds for its thumbnail; 0 when absent or not a sane number."""
    try:
        value = float(request.query_params.get("t", "0"))
    except ValueError:
        return 0.0
    return value if 0.0 <= value < 1e7 else 0.0


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number") from None
    return max(low, min(high, value))


def build_app(
    backend: Backend,
    thumbs: ThumbnailCache,
    token: str,
    port: int,
    upload_dir: Path,
    max_upload: int = MAX_UPLOAD,
) -> Starlette:
    """The whole gallery as one ASGI app; `token` guards every route, static files included."""

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Blocking catalog, socket and model work off the event loop (Starlette's thread pool)."""
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(fn, *args, **kwargs)

    async def answer(request: Request, ask: Callable[[Options], list[Hit]], limit_default: int = PAGE) -> Response:
        """Run one search off the event loop and return the page of results the request asked for."""
        try:
            offset = _int(request, "offset", 0, 0, MAX_RESULTS)
            limit = _int(request, "limit", limit_default, 1, MAX_RESULTS)
            # k counts images; asking one more than the page tells whether another page exists.
            options = parse_options(request.query_params, offset + limit + 1)
            hits = await run(ask, options)
        except ImageReadError as exc:
            return _error(exc.reason[:1].upper() + exc.reason[1:] + ".", 400)
        except (RequestError, ValueError) as exc:
            return _error(said(exc), 400)
        except ImgdError as exc:
            return _error(said(exc), 409)
        return JSONResponse(_hits_page(hits, offset, limit))

    async def search(request: Request) -> Response:
        try:
            terms = parse_query(request.query_params.get("q", ""))
        except RequestError as exc:
            return _error(str(exc), 400)
        return await answer(request, lambda options: backend.search(terms, options))

    async def similar(request: Request) -> Response:
        content_id = content_of(request.path_params["item"])
        if content_id is None:
            return _error("That image is no longer in the catalog.", 404)
        return await answer(request, lambda options: backend.similar(content_id, options))

    async def search_image(request: Request) -> Response:
        """A dropped or pasted picture: checked in memory, kept in a private temp file for the search only."""
        declared = request.headers.get("content-length")
        too_big = f"That file is larger than {max_upload >> 20} MB; search with a smaller picture."
        if declared is not None and declared.isdigit() and int(declared) > max_upload:
            return _error(too_big, 413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_upload:
                return _error(too_big, 413)
        if not body:
            return _error("The upload was empty; drop a picture file.", 400)
        try:
            with Image.open(io.BytesIO(body)) as probe:
                probe.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return _error("That file is not a picture imgd can read (JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC).", 400)
        path = await run(_write_upload, upload_dir, bytes(body))
        try:
            term = (Term("image", path),)
            return await answer(request, lambda options: backend.search(term, options), limit_default=240)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def dupes(request: Request) -> Response:
        """Duplicate groups as `imgd dupes` finds them (same threshold, same filters), a page of groups."""
        try:
            offset = _int(request, "offset", 0, 0, 10**9)
            limit = _int(request, "limit", DUPE_PAGE, 1, MAX_RESULTS)
            raw = request.query_params.get("threshold", "").strip()
            try:
                threshold = float(raw) if raw else None
            except ValueError:
                threshold = -1.0
            if threshold is not None and not 0.0 < threshold <= 1.0:  # also NaN
                raise RequestError(f"The threshold must be a number above 0 and at most 1, not '{raw}'.")
            filters = parse_options(request.query_params, 1).filters
            used, groups = await run(backend.dupes, threshold, filters)
        except (RequestError, ValueError) as exc:
            return _error(said(exc), 400)
        except ImgdError as exc:
            return _error(said(exc), 409)
        return JSONResponse(
            {
                "threshold": used,
                "total": len(groups),
                "more": len(groups) > offset + limit,
                "groups": [
                    {
                        "kind": g.kind,
                        "reclaimable": g.reclaimable,
                        "members": [
                            {
                                "id": m.id,
                                "name": os.path.basename(m.path),
                                "score": round(m.score, 6),
                                "bytes": m.size,
                                "width": m.width,
                                "height": m.height,
                                "same_content": m.same_content,
                            }
                            for m in g.members
                        ],
                    }
                    for g in groups[offset : offset + limit]
                ],
            }
        )

    async def recent(request: Request) -> Response:
        """The newest pictures, by time taken: what the page shows before the first search."""
        try:
            offset = _int(request, "offset", 0, 0, 10**9)
            limit = _int(request, "limit", PAGE, 1, MAX_RESULTS)
            hits, more = await run(backend.recent, offset, limit)
        except ValueError as exc:
            return _error(said(exc), 400)
        except ImgdError as exc:
            return _error(said(exc), 409)
        return JSONResponse({"hits": hits, "more": more})

    async def thumbnail(request: Request, side: int) -> Response:
        path = await run(backend.resolve, request.path_params["item"])
        if path is None:
            return _error("No such image in the catalog.", 404)
        try:
            thumb = await asyncio.wrap_future(thumbs.submit(path, side, _seconds(request)))
        except ImageReadError as exc:
            return _error(f"This image cannot be shown: {exc.reason}.", 404)
        # The id names one path and the cache key one version of it; an edited file keeps its id,
        # so the browser revalidates rather than trusting its copy forever.
        return Response(thumb.data, media_type="image/jpeg", headers={"cache-control": "private, max-age=60"})

    async def grid_thumb(request: Request) -> Response:
        return await thumbnail(request, GRID_SIDE)

    async def view_thumb(request: Request) -> Response:
        return await thumbnail(request, VIEW_SIDE)

    async def on_disk(request: Request) -> str | Response:
        """The live path the request's id names, or the 404 to answer with."""
        path = await run(backend.resolve, request.path_params["item"])
        if path is None:
            return _error("No such image in the catalog.", 404)
        if not is_regular_file(path, backend.config.follow_symlinks):
            return _error("This image is no longer on disk as a regular file.", 404)
        return path

    async def original(request: Request) -> Response:
        path = await on_disk(request)
        if isinstance(path, Response):
            return path
        media = mimetypes.guess_type(path)[0] or "application/octet-stream"
        # A video plays in the page from its best frame: FileResponse answers the browser's Range requests.
        if not media.startswith(("image/", "video/")) or media == "image/svg+xml":
            media = "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"cache-control": "private, max-age=60"})

    async def item(request: Request) -> Response:
        path = await on_disk(request)
        if isinstance(path, Response):
            return path
        try:
            details = await run(describe, path)
        except OSError:
            return _error("This image is no longer on disk.", 404)
        return JSONResponse({"id": request.path_params["item"], **details})

    async def status(request: Request) -> Response:
        try:
            info = await run(backend.status)
        except ImgdError as exc:
            return _error(str(exc), 409)
        counts = info.get("counts") or {}
        queue = info.get("queue") or {}
        daemon = info.get("daemon") or {}
        return JSONResponse(
            {
                "daemon": bool(daemon.get("running")),
                "state": daemon.get("state"),
                "images": counts.get("contents", 0),
                "files": counts.get("files", 0),
                "failed": counts.get("failed", 0),
                "queue": queue.get("pending", 0),
                "rate": queue.get("rate"),
                "newest": info.get("newest"),
                "change": (info.get("model") or {}).get("change"),  # a model change under way
            }
        )

    async def alerts(request: Request) -> Response:
        """The saved searches and what they matched lately; the gallery creates and changes none."""
        try:
            return JSONResponse(await run(backend.alerts))
        except ImgdError as exc:
            return _error(said(exc), 409)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    routes = [
        Route("/", page),
        Route("/api/search", search),
        Route("/api/similar/{item}", similar),
        Route("/api/search-image", search_image, methods=["POST"]),
        Route("/api/dupes", dupes),
        Route("/api/recent", recent),
        Route("/api/item/{item}", item),
        Route("/api/status", status),
        Route("/api/alerts", alerts),
        Route("/thumb/{item}", grid_thumb),
        Route("/view/{item}", view_thumb),
        Route("/original/{item}", original),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(TokenGate, token=token, port=port)])


def is_regular_file(path: str, follow_symlinks: bool) -> bool:
    """Still a regular file (not a FIFO, device or folder that took its name; a link only if followed)."""
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) and follow_symlinks:
            info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode)


def _write_upload(folder: Path, data: bytes) -> str:
    """A private, hidden temp file (watchers skip dot-names) in a folder outside the library."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, path = tempfile.mkstemp(dir=folder, prefix=".upload-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def describe(path: str) -> dict[str, Any]:
    """What the full view shows: name, folder, size, pixels, date taken, camera and place from EXIF."""
    info = os.stat(path)
    details: dict[str, Any] = {
        "path": path,
        "name": os.path.basename(path),
        "bytes": info.st_size,
        "modified": info.st_mtime,
        "width": None,
        "height": None,
        "taken": None,
        "camera": None,
        "place": None,
    }
    with contextlib.suppress(OSError, SyntaxError, ValueError, Image.DecompressionBombError), Image.open(path) as image:
        width, height = image.size
        exif = image.getexif()
        if exif.get(0x0112, 1) in (5, 6, 7, 8):
            width, height = height, width
        details["width"], details["height"] = width, height
        taken = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, else DateTime
        camera = " ".join(str(exif.get(tag, "")).strip("\0 ") for tag in (0x010F, 0x0110)).strip()
        details["taken"] = str(taken).strip("\0 ") or None if taken else None
        details["camera"] = camera or None
        meta = imaging.read_meta(image.format, exif, width, height)
        place = places.locate(meta.latitude, meta.longitude)
        details["place"] = place.label() if place else None
    return details
