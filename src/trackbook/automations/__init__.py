"""Automations: an event recorded starts runs of actions (webhooks, email, tags, lists)."""
