"""The browser tracker, ``/tracker.js``: one script tag gives a shop automatic tracking.

The served file is ``static/tracker.min.js``, built from ``static/tracker.js`` by
``scripts/build-tracker.sh``. ``/tracker.js`` is revalidated hourly (ETag), so a
server upgrade reaches shops within the hour; ``/tracker-<version>.js`` never
changes and is cached for a year.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from nilemetrics.server.openapi import problems

router = APIRouter(tags=["tracker"])

_MEDIA_TYPE = "text/javascript; charset=utf-8"


@dataclass(frozen=True)
class TrackerScript:
    """The served script: plain and gzipped bytes, and its content version."""

    body: bytes
    gzipped: bytes
    version: str

    @property
    def etag(self) -> str:
        """A strong validator: the version is a hash of the content."""
        return f'"{self.version}"'


@cache
def tracker_script() -> TrackerScript:
    """Read and compress the built tracker once per process."""
    body = resources.files("nilemetrics.server").joinpath("static/tracker.min.js").read_bytes()
    return TrackerScript(
        body=body,
        gzipped=gzip.compress(body, compresslevel=9, mtime=0),
        version=hashlib.sha256(body).hexdigest()[:12],
    )


def _answer(request: Request, cache_control: str) -> Response:
    script = tracker_script()
    headers = {
        "Cache-Control": cache_control,
        "ETag": script.etag,
        "X-Tracker-Version": script.version,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        # Shops with Cross-Origin-Embedder-Policy may still load it.
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if script.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(script.gzipped, media_type=_MEDIA_TYPE, headers=headers)
    return Response(script.body, media_type=_MEDIA_TYPE, headers=headers)


@router.get("/tracker.js", response_class=Response)
async def tracker(request: Request) -> Response:
    """The tracker script, latest version (revalidated after an hour)."""
    return _answer(request, "public, max-age=3600, stale-while-revalidate=86400")


@router.get(
    "/tracker-{version}.js",
    response_class=Response,
    # FastAPI declares a 422 for any route with a parameter: in the shape this server uses.
    responses=problems(404, 422),
)
async def tracker_version(request: Request, version: str) -> Response:
    """The tracker script of one version (immutable); 404 for any other version."""
    if version != tracker_script().version:
        return JSONResponse(
            status_code=404,
            content={"detail": f"no tracker version {version[:40]!r}; use /tracker.js"},
        )
    return _answer(request, "public, max-age=31536000, immutable")
