"""Data for the primary database host (overrides all.py)."""
