"""The OpenAPI document as the server behaves: the validation errors FastAPI documents as 422 are answered 400
(:func:`cim.api.errors.install_error_handlers`), so 422 and its schemas are taken out."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

#: FastAPI's schemas for its 422 answer, which this server never sends.
_UNUSED = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI) -> None:
    """Build ``app``'s OpenAPI document once, the first time it is asked for, without the 422 answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = without_422(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def without_422(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` without the 422 answers and their schemas.

    >>> doc = {"paths": {"/a": {"get": {"responses": {"200": {}, "422": {}}}}}, "components": {"schemas": {}}}
    >>> without_422(doc)["paths"]["/a"]["get"]["responses"]
    {'200': {}}
    """
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in _UNUSED:
        schemas.pop(name, None)
    return document
