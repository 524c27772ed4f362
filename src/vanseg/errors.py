"""The base of every error that a user can fix by changing a file, a path or an option.

Entry points (train, eval, predict and every tool) print such an error as one or two lines and
exit with :data:`USER_ERROR_EXIT`; anything else is a bug and keeps its traceback
(`vanseg.utils.cli.user_errors`). ``VANSEG_DEBUG=1`` shows the traceback of user errors too.
"""

from __future__ import annotations

__all__ = ["VansegError", "ConfigError", "InputNotFoundError", "USER_ERROR_EXIT"]

#: Exit status of an entry point stopped by a :class:`VansegError` (argparse's usage status).
USER_ERROR_EXIT = 2


class VansegError(Exception):
    """A mistake in the input: the message names the file, value or option and what to do."""


class ConfigError(VansegError, ValueError):
    """An option value or combination that cannot work; the message says what to change."""


class InputNotFoundError(VansegError, FileNotFoundError):
    """A file or folder named by the user does not exist."""
