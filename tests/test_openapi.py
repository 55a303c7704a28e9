"""The native API documents itself."""

from __future__ import annotations

import re

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
