"""The event store: track() with group commit, the name and property catalog, queries."""
