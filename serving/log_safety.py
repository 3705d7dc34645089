"""Server log lines that no client can write into.

A log line is read by people and by log shippers that split on line breaks; a client who can put a
line break or a NUL into one can forge whole lines (``%0a`` in a URL path decodes to one), and one
who can put a key name into one can put an identifier there. So:

- :class:`EscapeClientText`, on every handler of the server process, writes each record as one
  line: control characters (C0 and C1, DEL, the Unicode line and paragraph separators) become
  ``\\xNN`` / ``\\uNNNN`` escapes and a backslash is doubled, in the message and in the
  exception's own text (the traceback's frames come from source files and stay as they are).
  BentoML's access log, whose path is the decoded URL path, is covered by it.
- :class:`WithholdInputValues` replaces BentoML's traceback of a rejected request with the error
  locations and types, never the values, and names a JSON key that is not the schema's own by its
  position and length only.
"""

from __future__ import annotations

import logging
import re
import traceback

from pydantic import ValidationError

_CONTROL = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\\\]")


def _escape_one(match: re.Match) -> str:
    character = match.group()
    if character == "\\":
        return "\\\\"
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """``text`` as one line: control characters escaped (``\\n`` -> ``\\x0a``), backslashes doubled."""
    return _CONTROL.sub(_escape_one, text)


def _escaped_traceback(error: BaseException) -> str:
    """The traceback of ``error`` and its causes, with every exception's own text escaped to one line."""
    lines: list[str] = []
    seen: set[int] = set()

    def add(exception: traceback.TracebackException) -> None:
        seen.add(id(exception))
        if exception.__cause__ is not None and id(exception.__cause__) not in seen:
            add(exception.__cause__)
            lines.append("\nThe above exception was the direct cause of the following exception:\n\n")
        elif (exception.__context__ is not None and not exception.__suppress_context__
              and id(exception.__context__) not in seen):
            add(exception.__context__)
            lines.append("\nDuring handling of the above exception, another exception occurred:\n\n")
        if exception.stack:
            lines.append("Traceback (most recent call last):\n")
            lines.extend(exception.stack.format())
        lines.append(escape_control("".join(exception.format_exception_only()).rstrip("\n")) + "\n")

    add(traceback.TracebackException.from_exception(error))
    return "".join(lines).rstrip("\n")


class EscapeClientText(logging.Filter):
    """Every record as one line: control characters of its message and exception text escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_control(message)
        if escaped != message or record.args:
            record.msg, record.args = escaped, None
        if record.exc_info and record.exc_info[1] is not None and not getattr(record, "_escaped", False):
            record.exc_text = _escaped_traceback(record.exc_info[1])
            record._escaped = True  # several handlers share a record: once is enough
        return True


def escape_server_logs() -> None:
    """Add :class:`EscapeClientText` to every handler of this process's loggers (once each)."""
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    for handler in {handler for logger in loggers for handler in logger.handlers}:
        if not any(isinstance(f, EscapeClientText) for f in handler.filters):
            handler.addFilter(EscapeClientText())


def _location(loc: tuple, known: frozenset[str]) -> str:
    """An error location with every key that is not one of ``known`` replaced by its place and length."""
    parts = []
    for part in loc:
        if isinstance(part, int) or part in known:
            parts.append(str(part))
        else:
            parts.append(f"<key not in the schema, {len(str(part))} characters>")
    return ".".join(parts) or "body"


class WithholdInputValues(logging.Filter):
    """Replace tracebacks of rejected requests with the error locations and types, never the values.

    Parameters
    ----------
    known : iterable of str
        The schema's own names (request fields, patient fields): only these are logged as keys.
    """

    def __init__(self, known=()) -> None:
        super().__init__()
        self.known = frozenset(known)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            where = ", ".join(f"{_location(tuple(e['loc']), self.known)}: {e['type']}"
                              for e in error.errors(include_input=False, include_url=False))
            record.msg = f"{record.getMessage()}: rejected input ({where}); values withheld"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True
