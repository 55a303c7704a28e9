"""Trackbook: contact event tracking with FluentCRM, Octeth and ActiveCampaign dialects."""

__version__ = "0.1.0"
