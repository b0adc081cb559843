"""The API's documentation pages, served without a CDN.

FastAPI's ``/docs`` (Swagger UI) and ``/redoc`` pages load their scripts and styles from
jsDelivr and fonts from Google, so offline — ``llmplex serve --emulate`` on a machine
with no internet — they stay blank. These serve the same pages with the assets of the
``fastapi-offline`` package (in the ``[server]`` extra), from this server.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install_docs", "ASSETS"]

#: where the pages' scripts, styles and icon are served
ASSETS = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Add ``/docs`` and ``/redoc`` to ``app`` (built with ``docs_url=None,
    redoc_url=None``), with their assets under :data:`ASSETS`."""
    title = f"{app.title} {app.version}"
    openapi_url = app.openapi_url or "/openapi.json"
    try:
        static = files("fastapi_offline") / "static"
    except ModuleNotFoundError:  # fastapi installed without the extra: FastAPI's CDN pages
        swagger: dict[str, Any] = {}
        redoc_assets: dict[str, Any] = {}
    else:
        app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")
        swagger = {
            "swagger_js_url": f"{ASSETS}/swagger-ui-bundle.js",
            "swagger_css_url": f"{ASSETS}/swagger-ui.css",
            "swagger_favicon_url": f"{ASSETS}/favicon.png",
        }
        redoc_assets = {
            "redoc_js_url": f"{ASSETS}/redoc.standalone.js",
            "redoc_favicon_url": f"{ASSETS}/favicon.png",
        }

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=title, **swagger)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url, title=title, with_google_fonts=not redoc_assets, **redoc_assets
        )
