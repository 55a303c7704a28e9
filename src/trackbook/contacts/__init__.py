"""Contacts: identity resolution, anonymous ids, lists and their members."""
