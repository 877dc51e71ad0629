"""The explorer's HTTP side: a FastAPI app with the JSON API and the static page.

Requests never name files: the app reads the run folder it was started on (and, at start, the run's
data split) and writes nothing. Uploads are raw image bytes in the request body (Content-Type
image/*), capped at ``MAX_UPLOAD_BYTES``. Bad requests get a 4xx with ``{"detail": "<what to fix>"}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from vaekit.applications.latent_walk import interpolate_latents
from vaekit.server import schemas as S
from vaekit.server.explorer import MAX_POINTS, Explorer, ExplorerInputError
from vaekit.server.images import ImageInputError, to_data_urls, to_png_data_url

STATIC_DIR = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024
MAX_SAMPLES = 256
MAX_K = 5000
PAGE_CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; connect-src 'self'"
IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": f"the bytes of one image file (PNG, JPEG, ...; at most {MAX_UPLOAD_BYTES} bytes)",
        "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class BodyLimit:
    """ASGI middleware: no route ever reads more than ``max_bytes`` of a request body.

    A declared Content-Length over the limit is refused at once; otherwise the body is read here,
    message by message, and refused with 413 as soon as the count passes the limit, whatever the
    framing (chunked, no length, a Content-Length that lies). A body within the limit is handed on
    to the app unchanged. The 413 keeps the connection open: uvicorn then discards the rest of the
    body as it arrives (nothing is stored), so the client reliably gets the answer instead of a reset.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: dict, receive: Any, send: Any, status: int, detail: str) -> None:
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is larger than {self.max_bytes} bytes"
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit():
            await self._refuse(scope, receive, send, 400, "the Content-Length header is not a number")
            return
        if int(length) > self.max_bytes:
            await self._refuse(scope, receive, send, 413, too_large)
            return
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: the app sees the disconnect
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, 413, too_large)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def read_image_body(request: Request) -> bytes:
    """The raw body of an upload, refused with 415 unless it is declared as an image and with 413
    past the size limit (checked while streaming, not trusting Content-Length)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise ExplorerInputError(
            f"the body has Content-Type {ctype or 'none'!r}: send the image file's bytes as the body with "
            "Content-Type image/png (or image/jpeg, ...), not a form",
            415,
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise ExplorerInputError(f"the image file is larger than {MAX_UPLOAD_BYTES} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Upload:
    """An uploaded image file's bytes and how to read it."""

    data: bytes
    label: int | None
    invert: bool


async def upload(
    request: Request,
    label: int | None = Query(None, description="class (conditional models)"),
    invert: bool = Query(False, description="invert grey levels first (dark strokes on light paper)"),
) -> Upload:
    """The upload endpoints' shared inputs (a FastAPI dependency)."""
    return Upload(await read_image_body(request), label, invert)


UploadDep = Annotated[Upload, Depends(upload)]


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]  # where the value came from; the rest names the field
        where = ".".join(str(p) for p in loc)
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def create_app(
    run_dir: str | Path,
    split: str | None = None,
    max_points: int = MAX_POINTS,
    projection: str = "auto",
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The explorer app for one run folder; the model and the map are computed here, once."""
    ex = Explorer(run_dir, split=split, max_points=max_points, projection=projection)
    app = FastAPI(
        title=f"vaekit explorer: {ex.run_dir.name}",
        description="Latent-space explorer of one trained vaekit run. Images are PNG data URLs.",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.explorer = ex
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.exception_handler(ExplorerInputError)
    async def _explorer_error(request: Request, exc: ExplorerInputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(ImageInputError)
    async def _image_error(request: Request, exc: ImageInputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    def encoded(x: torch.Tensor, label: int | None, condition: torch.Tensor | None) -> dict[str, Any]:
        mean, std = ex.encode(x, condition)
        return {
            "image": None if ex.is_table else to_png_data_url(x[0]),
            "row": ex.decode_row_of_input(x) if ex.is_table else None,
            "z": mean[0].tolist(),
            "std": None if std is None else std[0].tolist(),
            "point": ex.map_point(mean[0]),
            "label": label,
        }

    def latent(end: S.Endpoint) -> tuple[torch.Tensor, int | None]:
        if end.z is not None:
            return ex.check_z(end.z), None
        x, label, condition = ex.example(end.index)
        return ex.encode(x, condition)[0][0], label

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP})

    @app.get("/info", response_model=S.InfoResponse, summary="The model, its config and metrics")
    def info() -> dict[str, Any]:
        limits = {"max_upload_bytes": MAX_UPLOAD_BYTES, "max_samples": MAX_SAMPLES, "max_k": MAX_K}
        return {**ex.info(), "limits": limits}

    @app.get("/map", response_model=S.MapResponse, summary="The split's posterior means in 2-D")
    def latent_map(
        color_by: str | None = Query(None, description="table runs: the column whose values colour the map"),
    ) -> dict[str, Any]:
        table = {"columns": [c.name for c in ex.columns] if ex.is_table else None, "color_by": None,
                 "values": None, "color": None}
        if color_by is not None:
            table.update(ex.color_by(color_by))
        return {
            **table,
            "x": ex.points[:, 0].tolist(),
            "y": ex.points[:, 1].tolist(),
            "index": ex.indices.tolist(),
            "label": None if ex.y is None else ex.y[ex.indices].tolist(),
            "projection": ex.projection.method,
            "axes": list(ex.projection.axes),
            "split": ex.split,
        }

    @app.get("/examples/{index}", response_model=S.Example, summary="One example of the split, encoded")
    def example(index: int) -> dict[str, Any]:
        return {**encoded(*ex.example(index)), "index": index}

    @app.post("/decode", response_model=S.DecodeResponse, summary="Decode a latent vector or map point")
    def decode(req: S.DecodeRequest) -> dict[str, Any]:
        z = ex.check_z(req.z) if req.z is not None else ex.latent_of_point(list(req.point))
        label = ex.check_label(req.label)
        if ex.is_table:
            return {"image": None, "row": ex.decode_row(z, label), "z": z.tolist(), "point": ex.map_point(z)}
        image = ex.decode(z[None], label)[0]
        return {"image": to_png_data_url(image), "row": None, "z": z.tolist(), "point": ex.map_point(z)}

    @app.post("/encode", response_model=S.EncodeResponse, openapi_extra=IMAGE_BODY,
              summary="Encode an uploaded image")
    async def encode(up: UploadDep) -> dict[str, Any]:
        return await run_in_threadpool(
            lambda: encoded(ex.upload(up.data, up.invert), up.label, ex.check_label(up.label))
        )

    @app.post("/interpolate", response_model=S.InterpolateResponse,
              summary="Decodings along a line or great circle between two latents")
    def interpolate(req: S.InterpolateRequest) -> dict[str, Any]:
        ex.images_only("/interpolate")
        za, label_a = latent(req.a)
        zb, _ = latent(req.b)
        label = ex.check_label(req.label, fallback=label_a)
        z = interpolate_latents(za, zb, req.steps, "slerp" if req.path == "spherical" else "linear")
        return {
            "images": to_data_urls(ex.decode(z, label)),
            "z": z.tolist(),
            "t": torch.linspace(0, 1, req.steps).tolist(),
            "points": ex.map_points(z),
            "label": None if label is None else int(label[0]),
        }

    @app.post("/traverse", response_model=S.TraverseResponse,
              summary="Decodings moving one latent unit at a time, one row per unit")
    def traverse(req: S.TraverseRequest) -> dict[str, Any]:
        res = ex.traverse(req.dims, req.top, req.range, req.steps, req.index, req.label)
        rows = [{"dim": d, "activity": a, "images": to_data_urls(row), "z": z.tolist()}
                for d, a, row, z in zip(res["dims"], res["activity"], res["images"], res["z"], strict=True)]
        return {"rows": rows, "values": res["values"], "activity_kind": ex.activity_kind,
                "meaning": res["meaning"], "label": res["label"]}

    @app.get("/samples", response_model=S.SamplesResponse, summary="Samples from the prior, decoded")
    def samples(
        n: int = Query(16, ge=1, le=MAX_SAMPLES, description="samples (per class for a conditional model)"),
        seed: int = Query(0, ge=0, le=2**63 - 1),
        label: int | None = Query(None, description="only this class (conditional models)"),
    ) -> dict[str, Any]:
        classes = 1 if label is not None or not ex.num_classes else ex.num_classes
        if n * classes > MAX_SAMPLES:
            raise ExplorerInputError(f"{n} x {classes} classes is more than {MAX_SAMPLES} images; lower n")
        images, labels = ex.samples(n, seed, label)
        columns = n if ex.num_classes else math.ceil(math.sqrt(n))
        return {"images": to_data_urls(images), "labels": labels, "columns": columns}

    @app.post("/reconstruct", response_model=S.ReconstructResponse, openapi_extra=IMAGE_BODY,
              summary="Reconstruct an uploaded image; its ELBO and NLL")
    async def reconstruct(
        up: UploadDep,
        k: int = Query(500, ge=1, le=MAX_K, description="importance samples for log p(x)"),
    ) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            x = ex.upload(up.data, up.invert)
            res = ex.reconstruct(x, ex.check_label(up.label), k)
            return {**res, "image": to_png_data_url(x[0]),
                    "reconstruction": to_png_data_url(res["reconstruction"][0]), "k": k}

        return await run_in_threadpool(work)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
