"""The dashboard: FastAPI routes whose data functions feed HTML pages, htmx partials, JSON and CSV.

This package never imports torch: every number it shows was computed by the worker or the CLI.
"""
