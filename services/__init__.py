"""Rapport's services. They never import each other: they talk through Kafka topics."""
