"""The subscriber list and the send records, in any database SQLAlchemy speaks."""

from .db import Store, open_store

__all__ = ["Store", "open_store"]
