"""User-facing errors: one line that names the file or setting and says what to do."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input (a file, a flag, a config value).

    The CLI prints ``error: <message>`` on one line and exits with status 2, without a
    traceback. Messages must name the offending file or key and say how to fix it.
    """
