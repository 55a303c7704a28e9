"""The browser tracker /t.js: how Trackbook serves it, and what it records from a page
of another site in Debian's chromium."""

from __future__ import annotations

import httpx

from trackbook.web.tracker import SOURCE

MINIFIED_LIMIT = 5 * 1024


async def test_t_js_is_minified_cacheable_and_public(client: httpx.AsyncClient) -> None:
    served = await client.get("/t.js")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/javascript")
    assert served.headers["cache-control"].startswith("public, max-age=")
    assert int(served.headers["cache-control"].split("max-age=")[1]) >= 600
    assert served.headers["cross-origin-resource-policy"] == "cross-origin"
    # none of the dashboard's page headers, which would stop other sites embedding it
    assert "content-security-policy" not in served.headers
    assert "x-frame-options" not in served.headers
    assert len(served.content) < MINIFIED_LIMIT
    assert len(served.content) < len(SOURCE.read_bytes()) * 3 / 4
    assert b"/segment/v1/batch" in served.content
    assert b"/*" not in served.content

    etag = served.headers["etag"]
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        revalidated = await client.get("/t.js", headers={"If-None-Match": if_none_match})
        assert revalidated.status_code == 304
        assert revalidated.content == b""
        assert revalidated.headers["etag"] == etag
        assert revalidated.headers["cache-control"] == served.headers["cache-control"]
    changed = await client.get("/t.js", headers={"If-None-Match": '"an-older-version"'})
    assert changed.status_code == 200
    assert changed.content == served.content

    head = await client.head("/t.js")
    assert head.status_code == 200
    assert head.headers["etag"] == etag
