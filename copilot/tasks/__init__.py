"""The copilot's tasks: each turns an incident snapshot and its evidence into a typed, cited
result (``base.Task``); ``copilot.runner.Copilot`` runs them on a backend with fallback."""
