"""A traffic simulator: synthetic customers, purchases, returns, complaints and feedback,
fed to a running Rapport through its public HTTP APIs and Kafka (``make demo``)."""

from simulator.plan import Plan, PlanSettings
from simulator.runner import Simulator, SimulatorConfig, Stats

__all__ = ["Plan", "PlanSettings", "Simulator", "SimulatorConfig", "Stats"]
