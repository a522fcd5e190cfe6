"""Throughput benchmarks: raw aiokafka against Rapport's producer and consumer paths."""
