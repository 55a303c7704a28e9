"""Segments: JSON definitions of who did what, each compiled to one SQL query."""
