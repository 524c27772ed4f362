"""One error style for user errors: ``<prog>: error: <message>``, exit status 2, no traceback."""

from __future__ import annotations

import pytest

from vanseg.errors import USER_ERROR_EXIT, ConfigError, VansegError
from vanseg.utils.cli import user_errors


@user_errors("tool.py")
def _fails(error: Exception) -> None:
    raise error


def test_user_error_is_one_line_and_exit_2(capsys, monkeypatch) -> None:
    monkeypatch.delenv("VANSEG_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        _fails(ConfigError("data.batch_size_per_gpu=0 must be a positive integer"))
    assert exit_info.value.code == USER_ERROR_EXIT == 2
    err = capsys.readouterr().err
    assert err == "tool.py: error: data.batch_size_per_gpu=0 must be a positive integer\n"


def test_debug_switch_shows_the_traceback(monkeypatch) -> None:
    monkeypatch.setenv("VANSEG_DEBUG", "1")
    with pytest.raises(ConfigError):
        _fails(ConfigError("bad"))


def test_bugs_keep_their_traceback(monkeypatch) -> None:
    monkeypatch.delenv("VANSEG_DEBUG", raising=False)
    with pytest.raises(ZeroDivisionError):
        _fails(ZeroDivisionError("a bug"))


def test_every_error_class_is_a_user_error() -> None:
    from vanseg.errors import (
        CheckpointError,
        ConfigError,
        DatasetError,
        InputNotFoundError,
        OutputExistsError,
    )
    from vanseg.errors import ConfigError as TasksConfigError

    for cls in (
        DatasetError,
        InputNotFoundError,
        DatasetError,
        ConfigError,
        ConfigError,
        CheckpointError,
        TasksConfigError,
        ConfigError,
        OutputExistsError,
    ):
        assert issubclass(cls, VansegError), cls


TOOLS = [
    "vanseg.data.check",
    "vanseg.data.download",
    "vanseg.data.benchmark",
    "vanseg.tools.browse_dataset",
    "vanseg.tools.compare_eval",
    "vanseg.tools.convert",
    "vanseg.tools.flops",
]


@pytest.mark.parametrize("module", TOOLS)
def test_every_tool_has_the_same_usage_and_error_shape(module: str, capsys) -> None:
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {module} ")
    with pytest.raises(SystemExit) as exit_info:
        main(["--no-such-flag"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: python -m {module} ")
    assert f"python -m {module}: error: " in err
