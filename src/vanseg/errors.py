"""The errors a user can fix by changing a file, a path or an option: six classes, one home.

Entry points (train, eval, predict and every tool) print such an error as one or two lines and
exit with :data:`USER_ERROR_EXIT`; anything else is a bug and keeps its traceback
(`vanseg.utils.cli.user_errors`). ``VANSEG_DEBUG=1`` shows the traceback of user errors too.

=====================  ===========================================================
class                  raised when
=====================  ===========================================================
`ConfigError`          an option value or combination cannot work
`InputNotFoundError`   a file or folder the user named does not exist
`DatasetError`         a dataset (image, label, split, download) is unusable
`CheckpointError`      a model file (checkpoint, export folder, weights) is unusable
`UntrustedConfigError` a stored config names code that is not allowed to run
`OutputExistsError`    a write would replace files that are not ours to replace
=====================  ===========================================================

Training outcomes (interrupted, non-finite loss, a full disk while saving) are not mistakes in
the input and live with training (`vanseg.training.signals`).
"""

from __future__ import annotations

__all__ = [
    "USER_ERROR_EXIT",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "InputNotFoundError",
    "OutputExistsError",
    "UntrustedConfigError",
    "VansegError",
]

#: Exit status of an entry point stopped by a :class:`VansegError` (argparse's usage status).
USER_ERROR_EXIT = 2


class VansegError(Exception):
    """A mistake in the input: the message names the file, value or option and what to do."""


class ConfigError(VansegError, ValueError):
    """An option value or combination that cannot work; the message says what to change."""


class InputNotFoundError(VansegError, FileNotFoundError):
    """A file or folder named by the user (or a config) does not exist."""


class DatasetError(VansegError, ValueError):
    """A dataset file, split or download that cannot be used; the message names the file."""


class CheckpointError(VansegError, RuntimeError):
    """A checkpoint, export folder or weight file that cannot be read or does not fit."""


class UntrustedConfigError(CheckpointError, ValueError):
    """A stored config names a target outside the allowed list (`vanseg.config.trust`)."""


class OutputExistsError(VansegError, FileExistsError):
    """A destination holds files that a write would replace; the message says how to proceed."""
