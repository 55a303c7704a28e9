"""The native API under /v1: batches, idempotent retries, backfill, cursor pagination."""
