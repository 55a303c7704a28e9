"""Side effects leaving Trackbook: the outbox worker, signed webhooks, SMTP email."""
