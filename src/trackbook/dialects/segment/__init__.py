"""Segment's HTTP tracking API at /segment/v1: what analytics libraries send, as events."""
