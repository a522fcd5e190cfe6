"""Complaints: support cases, their lifecycle, SLA clocks, comments and feedback."""
