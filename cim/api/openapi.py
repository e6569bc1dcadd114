"""The OpenAPI document as the server behaves: the validation errors FastAPI documents as 422 are answered 400
(:func:`cim.api.errors.install_error_handlers`), so 422 and its schemas are taken out; errors are always
``application/json`` (FastAPI files an error's schema under the operation's own media type, e.g. GeoJSON)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from cim.api.ogc_features import with_collection_paths

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
            app.openapi_schema = with_collection_paths(errors_as_json(without_422(document)))
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


def errors_as_json(document: dict[str, Any]) -> dict[str, Any]:
    """Every 4xx/5xx answer of ``document`` filed under ``application/json``, the one type errors are sent as.

    >>> ref = {"schema": {"$ref": "#/components/schemas/ErrorOut"}}
    >>> doc = {"paths": {"/a": {"get": {"responses": {"404": {"content": {"application/geo+json": ref}}}}}}}
    >>> list(errors_as_json(doc)["paths"]["/a"]["get"]["responses"]["404"]["content"])
    ['application/json']
    """
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                content = response.get("content")
                if status[:1] in ("4", "5") and content:
                    schema = next((c["schema"] for c in content.values() if c.get("schema")), None)
                    response["content"] = {"application/json": {"schema": schema} if schema else {}}
    return document
