"""Operator tools for the agents database: migrations, CLI."""
