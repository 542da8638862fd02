"""/schema's viewer is served by the app itself: its page names only same-origin files, each
answers with its type, under a CSP that allows them and nothing from elsewhere."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import TestClient

from interfaces.http.openapi_viewer import CONTENT_SECURITY_POLICY

Client = TestClient[Any]
TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def test_the_viewer_names_only_files_this_app_serves(client: Client) -> None:
    page = client.get("/schema")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline
    urls = re.findall(r'(?:src|href|data-spec-url)="([^"]*)"', page.text)
    assert len(urls) >= 4
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        answer = client.get(url)
        assert answer.status_code == 200, url
        suffix = re.search(r"\.[a-z]+$", url)
        if suffix and suffix.group() in TYPES:
            assert answer.headers["content-type"].startswith(TYPES[suffix.group()]), url
    bundle = client.get("/schema/swagger-ui/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content and len(bundle.content) > 500_000
    assert "https://" not in page.text and "http://" not in page.text


def test_the_viewer_and_its_files_are_not_operations_of_the_api(client: Client) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert not any(path.startswith("/schema") for path in paths)
    # The package's own files beside the viewer's are not served.
    for escape in ("..%2F..%2F__init__.py", "%2E%2E/%2E%2E/__init__.py"):
        assert client.get(f"/schema/swagger-ui/{escape}").status_code in (400, 404), escape
