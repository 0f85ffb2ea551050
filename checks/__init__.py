"""Production-readiness checks (pytest-testinfra), run against the hosts of inventory.py."""
