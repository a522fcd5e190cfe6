"""Rapport's shared kernel: what every service needs and no service owns.

Event envelope and schemas, Kafka and MongoDB plumbing (outbox, idempotent consumers,
dead-letter topics), auth, HTTP conventions, settings, logging, tracing and metrics.
It never imports from ``services``.
"""
