"""Moved to bgdb.remote (shared with the operator CLI); kept until every check imports it."""

from __future__ import annotations

from bgdb.remote import Target

__all__ = ["Target"]
