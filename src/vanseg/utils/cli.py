"""One command-line style for every entry point: ``train.py``, ``eval.py``, ``predict.py``, tools.

Tools (``python -m vanseg.tools.<x>``, ``python -m vanseg.data.<x>``) build their parser with
`tool_parser` (``prog`` as users type it, the module docstring as ``--help`` text) and, when they
read the Hydra config, take ``key=value`` overrides through `split_overrides`, exactly like
``train.py``. Bad arguments end with argparse's ``usage: ...`` and ``<prog>: error: ...``.

A :class:`vanseg.errors.VansegError` is printed as ``<prog>: error: <message>`` on stderr (and
written into the job's log files, e.g. ``train.log``) and the process exits with status 2
(:data:`vanseg.errors.USER_ERROR_EXIT`), with no traceback. One raised inside a library call and
re-raised as its cause (``hydra.utils.instantiate`` wraps every error of a constructor in an
``InstantiationException``) counts the same. Any other exception is a bug and keeps its
traceback. ``VANSEG_DEBUG=1`` re-raises user errors too, to show where they came from.
"""

from __future__ import annotations

import argparse
import errno
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from vanseg.errors import USER_ERROR_EXIT, VansegError

__all__ = [
    "DEBUG_ENV",
    "debug_enabled",
    "format_error",
    "split_overrides",
    "tool_parser",
    "user_errors",
]

#: Environment switch that shows tracebacks of user errors.
DEBUG_ENV = "VANSEG_DEBUG"

F = TypeVar("F", bound=Callable[..., object])


def debug_enabled() -> bool:
    """Whether ``VANSEG_DEBUG`` asks for tracebacks (any value but empty, 0, false, no)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def format_error(prog: str, err: BaseException) -> str:
    """``<prog>: error: <first line>``; further lines of the message are indented below it."""
    lines = str(err).strip().splitlines() or [type(err).__name__]
    return "\n".join([f"{prog}: error: {lines[0]}", *(f"  {line}" for line in lines[1:])])


#: Written into a multirun job's folder when the job fails (listed by the sweep summary).
JOB_ERROR_FILE = "error.json"


def multirun_job_dir() -> Path | None:
    """The output folder of the current Hydra multirun job, or None outside a multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        pass
    return None


def record_job_failure(folder: Path, message: str, exit_code: int) -> None:
    """Write ``error.json`` (the error line and exit status) into a failed sweep job's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"error": message, "exit_code": exit_code}, indent=2)
    tmp = folder / f".{JOB_ERROR_FILE}.tmp"
    tmp.write_text(text)
    tmp.replace(folder / JOB_ERROR_FILE)


#: ``OSError`` numbers that mean the user's disk or folder, not a bug: reported in one line.
_IO_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def _io_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _IO_ERRNOS


def _io_text(err: OSError) -> str:
    where = f" {err.filename}" if err.filename else ""
    return (
        f"cannot write{where}: {err.strerror}. Free disk space, make the folder writable, or "
        "choose another output folder"
    )


def user_error_cause(err: BaseException) -> VansegError | None:
    """``err`` or the first `VansegError` among its explicit causes (``raise ... from``)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, VansegError):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None


def _to_log_files(message: str) -> None:
    """Write ``message`` into the root logger's files (a Hydra job's ``<task>.log``) only."""
    record = logging.LogRecord("vanseg", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def user_errors(prog: str) -> Callable[[F], F]:
    """Decorate an entry point so that user errors end it in one style with exit status 2.

    Put it *below* ``@hydra.main`` so that it runs inside the Hydra job (Hydra would otherwise
    print its own traceback and exit with status 1).

    Args:
        prog: The command as users type it, e.g. ``"train.py"`` or
            ``"python -m vanseg.tools.convert"``.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as raised:
                err = user_error_cause(raised)
                if debug_enabled() or err is None and not _io_error(raised):
                    raise
                sys.stdout.flush()
                message = format_error(prog, err if err is not None else _io_text(raised))
                print(message, file=sys.stderr, flush=True)
                _to_log_files(message)
                job = multirun_job_dir()
                if job is not None:  # one failed job of a sweep: recorded, the sweep goes on
                    record_job_failure(job, message.splitlines()[0], USER_ERROR_EXIT)
                    return None
                raise SystemExit(USER_ERROR_EXIT) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def tool_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The parser of a ``python -m vanseg.<x>`` tool: ``prog`` as typed, the docstring as help.

    Args:
        prog: The command, e.g. ``"python -m vanseg.data.check"``; it starts every usage and
            error line.
        description: ``--help`` text, usually the module's ``__doc__`` (kept as written).
    """
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def split_overrides(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, list[str]]:
    """Parse ``--flags`` with ``parser``; every ``key=value`` argument is a Hydra override.

    An argument that is neither a known flag nor ``key=value`` ends the program with the
    parser's usage line and ``<prog>: error: ...`` (exit status 2).
    """
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. backbone=van_base head=upernet"
    )
    args = parser.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"expected Hydra overrides of the form key=value, got {bad}")
    return args, list(args.overrides)
