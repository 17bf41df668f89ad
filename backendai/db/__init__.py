"""The manager database: schema, engine adapter, migrations."""

from __future__ import annotations

from .engine import Database, open_database
from .migrate import current_revision, head_revision, upgrade

__all__ = ["Database", "current_revision", "head_revision", "open_database", "upgrade"]
