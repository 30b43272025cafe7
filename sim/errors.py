"""Errors a user can cause, each printed as one line naming the file, the table and the key."""
from __future__ import annotations


NAME_LIMIT = 80   # characters of a table or key name shown: a fuzzed 10,000-character name stays readable


def printable(text: str, limit: int | None = None) -> str:
    """Text as part of one line: control characters escaped (a newline shows as \\n), cut to `limit`."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return text if limit is None or len(text) <= limit else f"{text[:limit - 3]}..."


class ConfigError(Exception):
    def __init__(self, path: str, table: str, key: str | None, message: str):
        self.path, self.table, self.key, self.message = path, table, key, message
        where = f"[{printable(table, NAME_LIMIT)}]" + (f" key '{printable(key, NAME_LIMIT)}'" if key else "")
        super().__init__(f"{printable(path)}: {where}: {printable(message)}")


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
