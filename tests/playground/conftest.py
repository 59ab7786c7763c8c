"""One playground server (uvicorn in a thread on a free 127.0.0.1 port) and one headless Chromium per module."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

INSTALL = "apt-get install -y chromium"


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``(base_url, runs_root)`` of a live playground; stopped when the module's tests end."""
    pytest.importorskip("starlette")
    uvicorn = pytest.importorskip("uvicorn")
    from trainlab.playground.server import create_app

    root = tmp_path_factory.mktemp("playground")
    app = create_app(runs_root=root / "runs", upload_dir=root / "uploads")
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the playground server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", root
    srv.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Debian's; Playwright cannot download its own here)."""
    path = chromium_path()
    required = os.environ.get("TRAINLAB_REQUIRE_BROWSER") == "1"
    if path is None:
        if required:
            pytest.fail(f"no Chromium found and TRAINLAB_REQUIRE_BROWSER=1; install it: {INSTALL}")
        pytest.skip(f"browser tests need Chromium: {INSTALL}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            pytest.fail("playwright is not installed: pip install 'trainlab[test]'")
        pytest.skip("browser tests need playwright: pip install 'trainlab[test]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()
