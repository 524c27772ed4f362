"""Run folders that never collide: a fresh folder per run, and no writing into another run.

* The ``vanseg.fresh_dir`` resolver (`vanseg.config.resolvers`) creates each run folder.
* :class:`RunDirGuard` (a Hydra callback) refuses an explicit ``hydra.run.dir`` that already
  holds a run, before Hydra writes anything there, unless ``ckpt_path`` resumes that very run;
  then the run continues in place and Hydra's files go to a new ``.hydra/resume_<n>`` folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from vanseg.errors import USER_ERROR_EXIT, ConfigError
from vanseg.utils.distributed import launcher_is_rank_zero

__all__ = [
    "check_run_folder",
    "holds_run",
    "resumes_run",
    "RunDirGuard",
    "write_results",
]

#: Files and folders that mark a folder as some run's output.
RUN_MARKERS = (".hydra", "checkpoints", "results.json", "csv", "tensorboard", "wandb")


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds files of a run (its config, checkpoints, logs or results)."""
    return folder.is_dir() and any((folder / m).exists() for m in RUN_MARKERS)


def resumes_run(ckpt_path: Any, folder: Path) -> bool:
    """Whether ``ckpt_path`` names a checkpoint of the run in ``folder`` (``last`` included)."""
    if ckpt_path in (None, ""):
        return False
    if str(ckpt_path) == "last":
        return (folder / "checkpoints" / "last.ckpt").is_file()
    path = Path(str(ckpt_path)).resolve()
    return path.is_file() and folder.resolve() in path.parents


def saved_nothing(folder: Path) -> bool:
    """Whether the run in ``folder`` ended before its first checkpoint or result (a run killed
    early, say): starting again there loses nothing and continues its logs."""
    return not (folder / "results.json").exists() and not any(
        (folder / "checkpoints").glob("*.ckpt")
    )


def check_run_folder(folder: Path, ckpt_path: Any, option: str) -> bool:
    """May a training run write into ``folder``? ``True``: it continues a run there.

    Allowed: a folder that holds no run; the folder of the run that ``ckpt_path`` resumes;
    and, with no ``ckpt_path``, a run that saved nothing yet (a job killed before its first
    checkpoint and requeued). Anything else would mix two runs' files.

    Raises:
        ConfigError: ``folder`` holds another run; the message names ``option``.
    """
    if not holds_run(folder):
        return False
    if resumes_run(ckpt_path, folder):
        return True
    if ckpt_path in (None, "") and saved_nothing(folder):
        return True
    last = folder / "checkpoints" / "last.ckpt"
    hint = f", or continue that run with ckpt_path={last}" if last.is_file() else ""
    raise ConfigError(
        f"{option}={folder} already holds a run; a new run would overwrite its files. Choose "
        f"another {option} (or leave it out for a new folder){hint}"
    )


class RunDirGuard(Callback):
    """Refuses to start a run in a folder that holds another run (see the module docstring)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not launcher_is_rank_zero() or "trainer" not in config:  # training runs only;
            return  # DDP ranks > 0 join rank 0's folder
        folder = Path(str(OmegaConf.select(config, "hydra.run.dir")))
        try:
            continues = check_run_folder(folder, OmegaConf.select(config, "ckpt_path"),
                                         "hydra.run.dir")  # fmt: skip
        except ConfigError as err:
            print(f"Error: {err}", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)
        if not continues:
            return
        hydra_dir = folder / ".hydra"
        n = 1
        while (hydra_dir / f"resume_{n}").exists():
            n += 1
        with read_write(config.hydra):
            config.hydra.output_subdir = f".hydra/resume_{n}"


def write_results(path: Path, result: dict[str, Any]) -> Path:
    """Write ``result`` as JSON to ``path`` atomically.

    An existing file (an earlier session of a resumed run) is kept as ``<stem>.<n><suffix>``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        n = 1
        while path.with_name(f"{path.stem}.{n}{path.suffix}").exists():
            n += 1
        path.rename(path.with_name(f"{path.stem}.{n}{path.suffix}"))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, path)
    return path


def fresh_csv_version(save_dir: str | Path, name: str, version: str) -> str:
    """A CSV logger version whose ``metrics.csv`` does not exist yet.

    A run resumed in its own folder logs into ``<name>/resume_<n>/`` instead of rewriting the
    earlier session's file (Lightning rewrites it when the columns differ).
    """
    base = Path(save_dir) / name
    if not (base / version / "metrics.csv").exists():
        return version
    n = 1
    while (base / f"{version}resume_{n}" / "metrics.csv").exists():
        n += 1
    return f"{version}resume_{n}"
