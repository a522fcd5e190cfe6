"""Notifications: templates, channel deliveries, preferences and the delivery ledger."""
