"""The playground's server: a Starlette app (page, static assets, one WebSocket per page) over uvicorn.

``GET /`` serves the page, ``/static/*`` its assets (shipped in the package: no build step),
``POST /api/upload`` takes a CSV (validated by :func:`trainlab.data.files.load_csv`), and the
WebSocket ``/ws`` carries the page's commands in and the frames out. Training runs in each
page's own worker thread, never on the event loop, so the server answers while a run trains.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import math
import tempfile
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from trainlab.playground.live import DEFAULTS, MAX_LAYERS, MAX_UNITS, LiveRun

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 5 * 2**20
MAX_QUEUED_FRAMES = 2  # a slow page gets the newest frames, not a backlog


def _options() -> dict:
    """What the page's menus list: every name the config accepts for each setting."""
    from trainlab.experiments import catalog
    from trainlab.data.features import FEATURES
    from trainlab.experiments.trajectories import FUNCTIONS, PRESETS
    from trainlab.nn import models

    return {"defaults": DEFAULTS, "max_layers": MAX_LAYERS, "max_units": MAX_UNITS,
            "activations": sorted(models.ACTIVATIONS), "norms": sorted(models.NORMS),
            "dropout_kinds": sorted(models.DROPOUTS), "weight_inits": sorted(catalog.WEIGHT_INITS),
            "bias_inits": sorted(catalog.BIAS_INITS), "optimizers": list(catalog.OPTIMIZERS),
            "schedules": list(catalog.SCHEDULES), "features": list(FEATURES),
            "functions": list(FUNCTIONS), "presets": list(PRESETS)}


def _finite(value):
    """``value`` with every NaN/Inf float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _dumps(msg: dict) -> str:
    try:
        return json.dumps(msg, allow_nan=False, default=str)
    except ValueError:  # a NaN somewhere (a diverged run): sent as null rather than not at all
        return json.dumps(_finite(msg), allow_nan=False, default=str)


def create_app(runs_root: str | Path = "runs", upload_dir: str | Path | None = None) -> Starlette:
    """The ASGI app; saved runs go under ``runs_root``, uploaded CSVs under ``upload_dir``."""
    uploads: dict[str, Path] = {}
    upload_root = Path(upload_dir) if upload_dir is not None else Path(tempfile.mkdtemp(prefix="trainlab-csv-"))
    lock = threading.Lock()

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def options(request: Request):
        return JSONResponse(_options())

    async def upload(request: Request):
        from trainlab.data.files import DataFileError, load_csv

        body = await request.body()
        if len(body) > MAX_UPLOAD_BYTES:
            return JSONResponse({"error": f"the file has {len(body):,} bytes; the playground takes CSVs up to "
                                          f"{MAX_UPLOAD_BYTES // 2**20} MiB"}, status_code=400)
        key = hashlib.sha256(body).hexdigest()[:16]
        upload_root.mkdir(parents=True, exist_ok=True)
        path = (upload_root / f"{key}.csv").resolve()
        path.write_bytes(body)
        try:
            ds = await asyncio.to_thread(load_csv, path, "label")
            width = ds.X.shape[1] if ds.X.dim() == 2 else 0
            if width not in (1, 2):
                raise DataFileError(f"the CSV has {width} feature columns besides 'label'; the playground "
                                    "draws 2 (or 1) feature columns: give x1,x2,label")
            if len(ds) < 10:
                raise DataFileError(f"the CSV has {len(ds)} data rows; give at least 10")
        except (DataFileError, ValueError, UnicodeDecodeError) as err:
            path.unlink(missing_ok=True)
            return JSONResponse({"error": " ".join(str(err).replace(str(path), "the file").split())},
                                status_code=400)
        with lock:
            uploads[key] = path
        return JSONResponse({"id": key, "rows": len(ds), "features": int(ds.X.shape[1]),
                             "task": "classification" if ds.is_classification else "regression"})

    async def ws(websocket: WebSocket):
        await websocket.accept()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        pending = {"frames": 0}

        def push(msg: dict) -> None:
            if msg.get("type") == "frame" and "points" not in msg:
                if pending["frames"] >= MAX_QUEUED_FRAMES:
                    return
                pending["frames"] += 1
            queue.put_nowait(msg)

        def emit(msg: dict) -> None:  # from the worker threads
            loop.call_soon_threadsafe(push, msg)

        run = LiveRun(emit, uploads, runs_root)

        async def sender():
            while True:
                msg = await queue.get()
                if msg.get("type") == "frame" and "points" not in msg:
                    pending["frames"] -= 1
                await websocket.send_text(_dumps(msg))

        send_task = asyncio.create_task(sender())
        try:
            while True:
                try:
                    msg = await websocket.receive_json()
                except (json.JSONDecodeError, KeyError, ValueError):
                    push({"type": "error", "message": "a message the server could not read (not JSON)"})
                    continue
                if not isinstance(msg, dict):
                    push({"type": "error", "message": "a message must be a JSON object"})
                    continue
                await asyncio.to_thread(run.handle, msg)
        except (WebSocketDisconnect, WebSocketDisconnected):  # the page closed or reloaded
            pass
        finally:
            send_task.cancel()
            await asyncio.to_thread(run.close)

    routes = [Route("/", index), Route("/api/options", options), Route("/api/upload", upload, methods=["POST"]),
              WebSocketRoute("/ws", ws), Mount("/static", StaticFiles(directory=STATIC), name="static")]
    return Starlette(routes=routes)


def serve(host: str = "127.0.0.1", port: int = 8765, open_browser: bool = True, runs_root: str | Path = "runs") -> None:
    """Run the playground until Ctrl-C (uvicorn); open the page in the browser unless told not to."""
    import uvicorn

    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    print(f"trainlab playground: {url}  (Ctrl-C stops it)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        import sys
        print(f"trainlab playground: listening on {host}: anyone who can reach this machine can train on it "
              "and write run folders here", file=sys.stderr)
    if open_browser:
        import webbrowser
        threading.Timer(1.0, webbrowser.open, (url,)).start()
    uvicorn.run(create_app(runs_root), host=host, port=port, log_level="warning")
