"""The latent-space explorer: ``vaekit serve RUN_DIR`` serves a page to look at and play with a model.

    from vaekit.server import create_app   # a FastAPI app for one run folder
    from vaekit.server import serve        # create it and run it with uvicorn
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from vaekit.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

LOOPBACK_NAMES = ["127.0.0.1", "localhost"]


def _require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"the explorer needs the web server packages ({e.name} is missing)",
            "pip install 'vaekit[serve]'",
        ) from None


def create_app(run_dir: str | Path, **kwargs) -> FastAPI:
    """The explorer's FastAPI app for one run folder (see ``vaekit.server.app.create_app``)."""
    _require_serve_extra()
    from vaekit.server.app import create_app as _create

    return _create(run_dir, **kwargs)


def check_port(host: str, port: int) -> None:
    """Fail early, with a fix, when the address cannot be listened on (taken, or not this machine's)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is not a TCP port", "give --port a number in 1..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as e:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({e.strerror or e})",
            "choose another --port (or stop the program using it), or check --host",
        ) from None


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    projection: str = "auto",
    threads: int | None = None,
) -> None:
    """Load the run, then serve the explorer until interrupted (``threads``: torch CPU threads, default
    min(4, cores)). On a loopback address only requests naming a loopback host are answered (a guard
    against DNS rebinding by other web pages)."""
    _require_serve_extra()
    import torch
    import uvicorn

    # a slider move decodes a batch of one: past a few threads torch only adds synchronisation, and
    # the browser (often on the same machine) needs a core too
    torch.set_num_threads(threads or min(4, os.cpu_count() or 1))
    check_port(host, port)
    allowed = LOOPBACK_NAMES if host in LOOPBACK_NAMES else None
    app = create_app(run_dir, projection=projection, allowed_hosts=allowed)
    shown = f"[{host}]" if ":" in host else host
    print(f"vaekit explorer for {app.state.explorer.run_dir} at http://{shown}:{port}/ (Ctrl+C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["create_app", "serve"]
