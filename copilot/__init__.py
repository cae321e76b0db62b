"""Incident Copilot: grounded answers over postmortems, runbooks and live incident context."""

__version__ = "0.1.0"
