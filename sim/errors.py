"""Errors a user can cause, each printed as one line naming the file, the table and the key."""
from __future__ import annotations


class ConfigError(Exception):
    def __init__(self, path: str, table: str, key: str | None, message: str):
        self.path, self.table, self.key, self.message = path, table, key, message
        where = f"[{table}]" + (f" key '{key}'" if key else "")
        super().__init__(f"{path}: {where}: {message}")
