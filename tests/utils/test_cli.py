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


def test_user_error_wrapped_by_instantiate_is_one_line_and_in_the_log_file(
    capsys, monkeypatch, tmp_path
) -> None:
    """hydra.utils.instantiate re-raises a constructor's error as InstantiationException."""
    import logging

    from hydra.errors import InstantiationException

    from vanseg.errors import InputNotFoundError

    monkeypatch.delenv("VANSEG_DEBUG", raising=False)
    log_file = logging.FileHandler(tmp_path / "train.log")
    logging.getLogger().addHandler(log_file)
    wrapped = InstantiationException("Error in call to target 'vanseg.models.van_tiny':\n...")
    wrapped.__cause__ = InputNotFoundError("pretrained/van_tiny_754.pth.tar not found; fetch it")
    try:
        with pytest.raises(SystemExit) as exit_info:
            _fails(wrapped)
    finally:
        logging.getLogger().removeHandler(log_file)
        log_file.close()
    line = "tool.py: error: pretrained/van_tiny_754.pth.tar not found; fetch it\n"
    assert exit_info.value.code == 2 and capsys.readouterr().err == line
    assert (tmp_path / "train.log").read_text() == line


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
    "vanseg.tools.weights",
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
