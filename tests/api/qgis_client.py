"""What QGIS sees of a live server, run by :mod:`tests.api.test_qgis` under Debian's Python (``/usr/bin/python3``,
where ``python3-qgis`` lives), never the project's venv.

Usage: ``QT_QPA_PLATFORM=offscreen /usr/bin/python3 qgis_client.py '<json>'`` with ``{"base": URL, "tasks": [...]}``;
prints one JSON list, a result per task, on the last line of stdout. Each task names an ``op``:

- ``load`` (``collection``): the collection as an OGC API – Features layer (the ``OAPIF`` provider): valid, the
  feature count it shows on opening, its geometry type, fields, the ids of its features, whether it can edit.
- ``select`` (``collection``, optional ``expression``, ``subset``, ``params``): the ids of the features a
  ``QgsFeatureRequest`` expression keeps, on a layer with that subset string and extra query parameters in its URL.
- ``edit`` (``collection``, ``id``, ``field``, ``value``, ``token``): replace the feature (Part 4 ``PUT``) with one
  property changed, through QGIS's own HTTP client, first without the token and then with it; then a new layer reads
  it back.

QGIS 3.22 (Debian 12) sends to the server a layer's bbox, its subset string's comparisons of a date field (as
``datetime=``) and any query parameters written in the layer's URL (on every request); a ``QgsFeatureRequest``
expression and other subset strings it evaluates itself after downloading the features. Its OAPIF provider cannot
edit (editing, Part 4, came in QGIS 3.32), and it has no way to put a bearer token in a layer's requests, so the edit
goes through ``QgsBlockingNetworkRequest``, the HTTP client a QGIS plugin uses.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlencode

from qgis.core import (
    QgsApplication,
    QgsBlockingNetworkRequest,
    QgsExpression,
    QgsFeatureRequest,
    QgsVectorDataProvider,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QByteArray, QUrl
from qgis.PyQt.QtNetwork import QNetworkRequest


def layer_of(base: str, collection: str, *, params: dict[str, str] | None = None) -> QgsVectorLayer:
    """The collection as QGIS opens an OGC API – Features layer; ``params`` ride on every request it makes."""
    url = base + ("?" + urlencode(params) if params else "")
    uri = f"url='{url}' typename='{collection}' restrictToRequestBBOX='0'"
    return QgsVectorLayer(uri, collection, "OAPIF")


def ids_of(layer: QgsVectorLayer, request: QgsFeatureRequest | None = None) -> list[str]:
    return sorted(str(f["id"]) for f in layer.getFeatures(request or QgsFeatureRequest()))


def load(base: str, task: dict[str, Any]) -> dict[str, Any]:
    layer = layer_of(base, task["collection"])
    if not layer.isValid():
        return {"valid": False}
    count = layer.featureCount()  # what the layer shows once opened, before anything is read
    editing = QgsVectorDataProvider.AddFeatures | QgsVectorDataProvider.ChangeAttributeValues
    return {
        "valid": True,
        "feature_count": count,
        "geometry": QgsWkbTypes.displayString(QgsWkbTypes.flatType(layer.wkbType())),
        "fields": [field.name() for field in layer.fields()],
        "ids": ids_of(layer),
        "can_edit": bool(layer.dataProvider().capabilities() & editing),
    }


def select(base: str, task: dict[str, Any]) -> dict[str, Any]:
    layer = layer_of(base, task["collection"], params=task.get("params"))
    if not layer.isValid():
        return {"valid": False}
    if task.get("subset") and not layer.setSubsetString(task["subset"]):
        return {"valid": True, "subset_refused": True}
    request = QgsFeatureRequest(QgsExpression(task["expression"])) if task.get("expression") else None
    return {"valid": True, "ids": ids_of(layer, request), "feature_count": layer.featureCount()}


def http(method: str, url: str, *, body: bytes = b"", token: str | None = None) -> tuple[int, bytes]:
    """One request through QGIS's network stack: (status, body)."""
    request = QNetworkRequest(QUrl(url))
    request.setRawHeader(b"Accept", b"application/geo+json, application/json")
    if token:
        request.setRawHeader(b"Authorization", f"Bearer {token}".encode())
    blocking = QgsBlockingNetworkRequest()
    if method == "GET":
        blocking.get(request, True)
    else:
        request.setHeader(QNetworkRequest.ContentTypeHeader, "application/geo+json")
        blocking.put(request, QByteArray(body))
    reply = blocking.reply()
    status = reply.attribute(QNetworkRequest.HttpStatusCodeAttribute)
    return int(status or 0), bytes(reply.content())


def edit(base: str, task: dict[str, Any]) -> dict[str, Any]:
    item_url = f"{base}/collections/{task['collection']}/items/{task['id']}"
    status, raw = http("GET", item_url)
    if status != 200:
        return {"read_status": status}
    feature = json.loads(raw)
    feature.pop("links", None)
    feature["properties"][task["field"]] = task["value"]
    body = json.dumps(feature).encode()
    without_token, _ = http("PUT", item_url, body=body)
    with_token, answer = http("PUT", item_url, body=body, token=task["token"])
    layer = layer_of(base, task["collection"])
    found = [f for f in layer.getFeatures(QgsFeatureRequest(QgsExpression(f"\"id\" = '{task['id']}'")))]
    value = found[0][task["field"]] if found else None
    return {
        "without_token": without_token,
        "with_token": with_token,
        "answer": answer.decode(errors="replace")[:500],
        "read_back": None if value is None or (hasattr(value, "isNull") and value.isNull()) else value,
    }


OPS = {"load": load, "select": select, "edit": edit}


def main() -> None:
    job = json.loads(sys.argv[1])
    app = QgsApplication([], False)
    app.setPrefixPath("/usr", True)
    app.initQgis()
    try:
        results = [OPS[task["op"]](job["base"], task) for task in job["tasks"]]
    finally:
        app.exitQgis()
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
