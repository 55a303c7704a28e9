"""FluentCRM's REST API under /wp-json/fluent-crm/v2 (seeds/fluentcrm-event-tracking.md)."""
