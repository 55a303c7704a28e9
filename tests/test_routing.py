"""PrefixRouter: a router passed by at once must still answer every path it has."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from trackbook.routing import PrefixRouter


def _app() -> FastAPI:
    first = PrefixRouter(prefix="/first")
    second = PrefixRouter()

    @first.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @first.post("/items")
    async def add_item() -> dict[str, str]:
        return {"added": "yes"}

    @second.get("/files/{name:path}")
    async def file(name: str) -> dict[str, str]:
        return {"file": name}

    app = FastAPI()
    app.include_router(first)
    app.include_router(second)

    # a route added after the router was included
    @first.get("/late")
    async def late() -> dict[str, bool]:
        return {"late": True}

    return app


async def _get(app: FastAPI, method: str, path: str, *, root_path: str = "") -> httpx.Response:
    # the root path a server behind a proxy is given (uvicorn --root-path)
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path)


async def test_every_path_of_a_prefix_router_is_answered() -> None:
    app = _app()
    assert (await _get(app, "GET", "/first/items/7")).json() == {"item": 7}
    assert (await _get(app, "POST", "/first/items")).json() == {"added": "yes"}
    assert (await _get(app, "GET", "/files/a/b.txt")).json() == {"file": "a/b.txt"}
    assert (await _get(app, "GET", "/first/late")).json() == {"late": True}


async def test_a_path_no_router_has_is_404_and_a_wrong_method_405() -> None:
    app = _app()
    assert (await _get(app, "GET", "/first/item")).status_code == 404
    assert (await _get(app, "GET", "/elsewhere")).status_code == 404
    wrong_method = await _get(app, "GET", "/first/items")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"


async def test_paths_are_matched_without_the_apps_root_path() -> None:
    app = _app()
    answer = await _get(app, "GET", "/tracking/first/items/3", root_path="/tracking")
    assert answer.json() == {"item": 3}
