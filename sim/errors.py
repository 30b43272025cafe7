"""Errors a user can cause, each printed as one line naming the file, the table and the key."""
from __future__ import annotations


class ConfigError(Exception):
    def __init__(self, path: str, table: str, key: str | None, message: str):
        self.path, self.table, self.key, self.message = path, table, key, message
        where = f"[{table}]" + (f" key '{key}'" if key else "")
        super().__init__(f"{path}: {where}: {message}")


class Interrupted(BaseException):
    """Ctrl-C, raised by the command line's SIGINT handler. Not a KeyboardInterrupt, which click catches
    and answers with a blank line of its own; like it, not an Exception, so no handler swallows it."""


def pydantic_message(err: dict) -> str:
    """One of pydantic's errors as the part of the line after the key: what is wrong, and what was given."""
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] in ("dataclass_type", "model_type", "dict_type"):
        return f"needs a table of keys (got {_shown(err.get('input'))})"
    msg = err["msg"].removeprefix("Value error, ")
    if "input" in err and err["type"] not in ("value_error", "missing"):
        msg += f" (got {_shown(err['input'])})"
    return msg


def _shown(value) -> str:
    """A value as the user wrote it, cut short: a fuzzed 10,000-character string stays one readable line."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."
