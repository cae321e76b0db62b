"""Prompt templates, one file per task, with their loader (grows with the copilot tasks)."""
