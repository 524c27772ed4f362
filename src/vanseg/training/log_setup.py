"""Where training messages go: Lightning's and vanseg's messages into the run's log handlers.

Hydra configures the root logger of a job (stdout and ``<run>/train.log``). This module makes
the rest follow it: Lightning's own logger propagates to those handlers instead of printing to
stderr on its own, Python warnings are logged, ANSI colour codes are stripped from log files,
third-party advertisements are dropped, and, while a progress bar is drawn on a terminal, the
text progress lines are kept out of the console (they still reach the file).
"""

from __future__ import annotations

import logging
import re
import sys

from vanseg.training.text_log import PROGRESS_LOGGER

__all__ = [
    "PlainTextFilter",
    "NoiseFilter",
    "ProgressOnTerminalFilter",
    "configure_run_logging",
    "stdout_is_terminal",
]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

#: Messages from third-party libraries that say nothing about the run.
NOISE = (
    "💡 Tip: For seamless cloud",  # Lightning's litlogger advertisement
    "Deprecated setting 'anonymous'",  # wandb, for an argument Lightning passes
    "Trainer already configured with model summary callbacks",  # ours replaces Lightning's
    "`isinstance(treespec, LeafSpec)` is deprecated",  # Lightning's own use of torch's pytree
)

_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning")


def stdout_is_terminal() -> bool:
    """Whether standard output is an interactive terminal (not a file or a pipe)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class PlainTextFilter(logging.Filter):
    """Removes ANSI escape sequences (colours, cursor moves) from a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\x1b" in message:
            record.msg, record.args = _ANSI.sub("", message), None
        return True


class NoiseFilter(logging.Filter):
    """Drops the third-party messages listed in :data:`NOISE`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(message.startswith(n) or n in message for n in NOISE)


class ProgressOnTerminalFilter(logging.Filter):
    """Keeps the text progress lines off a console that shows a progress bar."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(PROGRESS_LOGGER)


def _is_file_handler(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.FileHandler)


def _add_once(handler: logging.Handler, kind: type[logging.Filter]) -> None:
    if not any(isinstance(f, kind) for f in handler.filters):
        handler.addFilter(kind())


def configure_run_logging(progress_bar_on_terminal: bool) -> None:
    """Route Lightning, warnings and vanseg messages to the root handlers set up by Hydra.

    Without root handlers (``train()`` called from Python) a console handler on stdout is added
    for vanseg's messages, so progress still shows.

    Args:
        progress_bar_on_terminal: A progress bar is drawn on the console, so the console handlers
            skip the text progress lines.
    """
    root = logging.getLogger()
    vanseg_log = logging.getLogger("vanseg")
    vanseg_log.setLevel(logging.INFO)
    if not root.handlers and not vanseg_log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        vanseg_log.addHandler(handler)
    handlers = list(root.handlers or vanseg_log.handlers)
    for name in _LIGHTNING_LOGGERS:  # they print on their own when imported before Hydra
        lg = logging.getLogger(name)
        if root.handlers:
            for h in list(lg.handlers):
                if type(h) is logging.StreamHandler:
                    lg.removeHandler(h)
            lg.propagate = True
        handlers.extend(lg.handlers)
    logging.captureWarnings(True)
    for handler in handlers:
        _add_once(handler, NoiseFilter)
        if _is_file_handler(handler):
            _add_once(handler, PlainTextFilter)
        elif progress_bar_on_terminal:
            _add_once(handler, ProgressOnTerminalFilter)
        else:
            for f in [f for f in handler.filters if isinstance(f, ProgressOnTerminalFilter)]:
                handler.removeFilter(f)
