"""Guardrails: redaction before text leaves the process, checks on what comes back."""
