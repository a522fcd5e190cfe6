"""Local development and test infrastructure for Rapport.

Starts the genuine Apache Kafka broker (KRaft), a MongoDB-compatible server
(SecantusDB, run as a separate process only) and an SMTP sink, either for the
test suite (see :mod:`devstack.pytest_plugin`) or for ``make up``
(:mod:`devstack.up`). Services never import this package.
"""
