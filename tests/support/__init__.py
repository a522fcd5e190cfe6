"""Plumbing the service tests share."""
