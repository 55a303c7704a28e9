"""Octeth's website event API: /api/v1/event, /api/v1/website_events.properties and
the legacy /api.php (seeds/octeth-event-tracking.md).

Error codes 1-10 are Octeth's own. Octeth documents none for the cases below, so
Trackbook uses codes above its range:

| code | HTTP | meaning |
|---|---|---|
| 11 | 401 | missing or invalid API key |
| 12 | 409 | the UUID already belongs to another identified subscriber |
| 13 | 503 | storage unavailable, nothing stored; retry after Retry-After |
| 14 | 422 | event tracking is turned off for the account |
| 15 | 422 | unknown Command |
| 16 | 413 | request body too large |
| 17 | 400 | malformed JSON body, or Properties that are not a JSON object |
| 18 | 422 | a value beyond Trackbook's limits (event name, properties size or depth) |
| 19 | 429 | rate limit reached; retry after Retry-After |
"""
