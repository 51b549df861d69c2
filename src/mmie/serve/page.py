"""Page assets: the web page (``static/``) and an offline API documentation page rendered on
the server from the OpenAPI document (no CDN, no script: it works without internet)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "add_page", "docs_html"]

STATIC_DIR = Path(__file__).with_name("static")


def add_page(app: FastAPI) -> None:
    """``GET /`` (the page), ``/static/*`` (its script and style) and ``GET /docs``."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_html(app.openapi()))


def _schema_rows(schema: dict[str, Any], spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(field, type, description)`` of an object schema (``$ref`` resolved once)."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type") or " | ".join(
            p.get("type", "?") for p in prop.get("anyOf", [])) or "object"
        rows.append((name + (" (required)" if name in required else ""), kind,
                     prop.get("description", "")))
    return rows


def docs_html(spec: dict[str, Any]) -> str:
    """A self-contained HTML page describing every path of ``spec``: method, summary, body
    fields (JSON and multipart), status codes, and the raw OpenAPI document."""
    e = html.escape
    info = spec.get("info", {})
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{e(info.get('title', 'API'))} API</title>"
             "<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;"
             "text-align:left}code{background:#f3f3f3}pre{background:#f7f7f7;padding:1rem;"
             "overflow:auto}</style></head><body>",
             f"<h1>{e(info.get('title', 'API'))} {e(str(info.get('version', '')))}</h1>",
             f"<p>{e(info.get('description', ''))}</p>",
             "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>.</p>"]
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{e(method.upper())} {e(path)}</code></h2>"
                         f"<p>{e(op.get('summary', ''))}</p>")
            content = op.get("requestBody", {}).get("content", {})
            for ctype, body in content.items():
                rows = _schema_rows(body.get("schema", {}), spec)
                if rows:
                    parts.append(f"<p>Body <code>{e(ctype)}</code>:</p><table><tr><th>field"
                                 "</th><th>type</th><th>description</th></tr>" + "".join(
                                     f"<tr><td><code>{e(n)}</code></td><td>{e(t)}</td>"
                                     f"<td>{e(d)}</td></tr>" for n, t, d in rows) + "</table>")
            codes = op.get("responses", {})
            if codes:
                parts.append("<p>Responses: " + ", ".join(
                    f"<b>{e(str(c))}</b> {e(r.get('description', ''))}"
                    for c, r in codes.items()) + "</p>")
    parts.append("<h2>OpenAPI document</h2><pre>" + e(json.dumps(spec, indent=1)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
