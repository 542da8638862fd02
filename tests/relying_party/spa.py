"""A single-page app on an origin of its own (http://127.0.0.1:PORT, where tessera is at
http://localhost:OTHER): spa/index.html with oidc-client-ts's browser bundle, installed from npm
into spa/node_modules, and a config.js naming tessera and the app's client_id."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.servers import npm_package

OIDC_CLIENT_TS_VERSION = "3.5.0"
HERE = Path(__file__).resolve().parent / "spa"


@dataclass
class SinglePageApp:
    origin: str
    client_id: str = ""  # set once the client is registered with this origin

    @property
    def redirect_uri(self) -> str:
        return f"{self.origin}/"

    @property
    def post_logout_redirect_uri(self) -> str:
        return f"{self.origin}/?signed-out"


def ensure_oidc_client_ts() -> Path:
    """The browser bundle (a script that defines window.oidc)."""
    package = npm_package(HERE, "oidc-client-ts", OIDC_CLIENT_TS_VERSION)
    return package / "dist" / "browser" / "oidc-client-ts.min.js"


@contextmanager
def single_page_app(authority: str, port: int) -> Iterator[SinglePageApp]:
    """Serves the app on 127.0.0.1:PORT until the block ends."""
    files = {
        "/": (HERE / "index.html", "text/html; charset=utf-8"),
        "/oidc-client-ts.min.js": (ensure_oidc_client_ts(), "text/javascript"),
    }
    app = SinglePageApp(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/config.js":
                settings = {"authority": authority, "clientId": app.client_id}
                body = f"window.SPA = {json.dumps(settings)};\n".encode()
                kind = "text/javascript"
            elif path in files:
                source, kind = files[path]
                body = source.read_bytes()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()
