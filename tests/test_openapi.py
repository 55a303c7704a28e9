"""The native API documents itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx


async def test_openapi_lists_the_native_routes_and_docs_render(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in (
        "/v1/track",
        "/v1/batch",
        "/v1/identify",
        "/v1/contacts",
        "/v1/contacts/{contact_id}/events",
        "/v1/lists/{list_id}/contacts/{contact_id}",
        "/v1/event-names",
        "/v1/event-names/{name}/properties",
        "/v1/account",
    ):
        assert path in spec["paths"], path
    assert "/v1/_bench/validate" not in spec["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "SwaggerUIBundle" in docs.text
    # its assets come from Trackbook (tests/web/test_reference.py renders it offline)
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets
    for asset in assets:
        assert asset.startswith("/docs-assets/"), asset
        assert (await client.get(asset)).status_code == 200


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


async def test_the_reference_names_fields_as_the_sender_writes_them(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    # no schema shown under its Python module path
    assert [name for name in schemas if "__" in name] == []
    for ref in _refs(spec):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref

    def body(path: str) -> dict[str, Any]:
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        return dict(schema["schema"])

    track = schemas[body("/v1/track")["$ref"].rsplit("/", 1)[1]]
    batch_item = body("/v1/batch")["properties"]["events"]["items"]
    assert batch_item == body("/v1/track")
    assert {"event", "contact", "timestamp", "message_id"} <= set(track["properties"])
    assert "occurred_at" not in str(track)
    contact = schemas[track["properties"]["contact"]["$ref"].rsplit("/", 1)[1]]
    assert set(contact["properties"]) == {"id", "email", "external_id", "anonymous_id"}
    authorization = next(
        parameter
        for parameter in spec["paths"]["/v1/track"]["post"]["parameters"]
        if parameter["name"] == "authorization"
    )
    assert "`Authorization: Bearer <API key>`" in authorization["description"]
