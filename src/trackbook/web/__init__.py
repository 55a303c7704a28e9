"""The dashboard: server-rendered pages for marketers, on the same services as the APIs."""
