"""Profiles: customers, contact data, consents, the purchase and return ledger, interactions."""
