"""Shareable weights without pickle: a folder with ``model.safetensors`` and ``config.json``.

The layout follows huggingface_hub's conventions, so the folder can be uploaded to the Hub as a
model repository and loaded back by its id:

* ``model.safetensors``: the segmentor's ``state_dict`` (tensors only, safetensors format);
* ``config.json``: ``{"vanseg_format": 1, "vanseg_version": ..., **ModelMeta.to_dict(),
  "id2label", "label2id"}``: the model config, class names, palette, normalisation and
  default test protocol;
* ``README.md`` (optional): the model card (`vanseg.checkpoint.card`); `push_to_hub` uploads
  the folder with ``HfApi.upload_folder``.

Writing (`save_pretrained`, also ``python -m vanseg.tools.export ckpt_path=... format=safetensors``)
replaces nothing without ``overwrite``, and each file is written atomically (``config.json``
last, so a folder with a ``config.json`` is complete). Reading (`load_pretrained`,
`vanseg.from_pretrained`) uses ``safetensors.torch.load_file`` and ``json`` only: no pickle, so
no ``weights_only`` question arises. A hub id (``owner/name``) that is not a local folder is
fetched with ``huggingface_hub.snapshot_download`` (cached; ``local_files_only=True`` or
``HF_HUB_OFFLINE=1`` use the cache only). A published name (``light_ham_van_base_ade20k``,
`vanseg.models.zoo`) that is not a local folder is fetched, converted and cached by
`vanseg.checkpoint.zoo.resolve_weights` and read as a vanseg checkpoint.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vanseg._version import __version__
from vanseg.checkpoint.card import label_maps
from vanseg.checkpoint.file import LoadedCheckpoint, load_checkpoint, model_with_weights
from vanseg.checkpoint.metadata import ModelMeta
from vanseg.checkpoint.zoo import resolve_weights
from vanseg.config.trust import check_model_config
from vanseg.errors import CheckpointError, ConfigError
from vanseg.models.zoo import is_zoo_name
from vanseg.utils.atomic import refuse_existing, write_atomic

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "from_pretrained",
    "load_pretrained",
    "looks_like_hub_id",
    "push_to_hub",
    "resolve_pretrained",
    "save_pretrained",
]

#: File names inside an exported folder (huggingface_hub's usual names).
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
#: ``vanseg_format`` of the ``config.json`` this module writes.
FORMAT_VERSION = 1
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def save_pretrained(
    model: nn.Module,
    meta: ModelMeta,
    folder: str | Path,
    overwrite: bool = False,
    card: str | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` (created if needed).

    Args:
        model: The segmentor whose ``state_dict`` is stored (any device; saved from the CPU).
        meta: Its metadata (``config.json`` holds ``meta.to_dict()``).
        folder: Output folder.
        overwrite: Replace the files if the folder already holds them.
        card: Text of a model card written as ``README.md`` (`vanseg.checkpoint.card`).

    The weights are read back and compared tensor by tensor before ``config.json`` (which
    marks a complete folder) is written.

    Raises:
        ConfigError: ``folder`` is a file.
        OutputExistsError: It already holds the files and ``overwrite`` is false.
        CheckpointError: The weights read back differ from the model's.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output={folder} is a file; give a folder for the export")
    files = [folder / WEIGHTS_NAME, folder / CONFIG_NAME]
    refuse_existing([*files, folder / CARD_NAME] if card is not None else files, overwrite)
    # safetensors refuses tensors that share memory; contiguous CPU copies never do.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    config = {"vanseg_format": FORMAT_VERSION, "vanseg_version": __version__}
    config.update(meta.to_dict())
    config.update(label_maps(meta))  # transformers' names, for the Hub widgets and other tools
    text = json.dumps(config, indent=2) + "\n"
    write_atomic(folder / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp)))
    stored = _read_weights(folder / WEIGHTS_NAME)
    differing = [k for k in state if k not in stored or not torch.equal(stored[k], state[k])]
    if differing or len(stored) != len(state):
        raise CheckpointError(
            f"{folder / WEIGHTS_NAME} does not hold the model's tensors ({len(differing)} "
            f"differ or are missing, e.g. {differing[:3]}); export again"
        )
    if card is not None:
        write_atomic(folder / CARD_NAME, lambda tmp: tmp.write_text(card))
    write_atomic(folder / CONFIG_NAME, lambda tmp: tmp.write_text(text))
    return folder


def push_to_hub(
    folder: str | Path, repo_id: str, token: str | None = None, private: bool = False
) -> str:
    """Upload an export folder to the Hub model repository ``repo_id`` (created if needed).

    The token comes from ``token``, else from huggingface_hub's usual places (``HF_TOKEN``,
    ``huggingface-cli login``). Returns the commit URL.

    Raises:
        ConfigError: ``repo_id`` is not of the form owner/name.
        CheckpointError: The folder is not a complete export, or the upload failed.
    """
    folder = Path(folder)
    if not looks_like_hub_id(repo_id):
        raise ConfigError(f"push={repo_id} is not a Hub repository id; give owner/name")
    _read_config(folder / CONFIG_NAME)  # a complete export only
    from huggingface_hub import HfApi

    api = HfApi(token=token, library_name="vanseg")
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME],
            commit_message="Upload vanseg export",
        )
    except Exception as err:  # huggingface_hub raises many types (auth, network, HTTP)
        raise CheckpointError(
            f"push={repo_id}: the upload failed ({type(err).__name__}: {err}); log in with "
            "`huggingface-cli login` or set HF_TOKEN, and check the repository name"
        ) from err
    return str(getattr(info, "commit_url", info))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err


def looks_like_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and not source.startswith((".", "/", "~"))


def resolve_pretrained(
    source: str | Path,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """The local folder of ``source``: an existing folder, or a hub id fetched into the cache.

    Raises:
        CheckpointError: Not a folder and not a hub id, or the download failed (offline, no
            such repository, no access); the message includes huggingface_hub's reason.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    text = str(source)
    if path.exists():
        raise CheckpointError(
            f"{text} is a file; from_pretrained takes the exported folder (with {WEIGHTS_NAME} "
            "and config.json). For a training checkpoint use Segmenter.from_checkpoint"
        )
    if not looks_like_hub_id(text):
        raise CheckpointError(
            f"{text} is neither an existing folder nor a Hub model id of the form owner/name"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise CheckpointError(f"{text}: downloading needs huggingface_hub ({err})") from err
    try:
        folder = snapshot_download(
            text,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            allow_patterns=[WEIGHTS_NAME, CONFIG_NAME],
            library_name="vanseg",
        )
    except Exception as err:  # huggingface_hub raises many types (offline, 404, auth, HTTP)
        raise CheckpointError(
            f"could not get the Hub model {text!r} ({type(err).__name__}: {err}). If it is a "
            "local folder, check the path; offline, download it once while online or pass the "
            "folder that holds model.safetensors and config.json"
        ) from err
    return Path(folder)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(
            f"{path.parent} has no {CONFIG_NAME}; export a checkpoint with "
            "`python -m vanseg.tools.export ckpt_path=... format=safetensors output=FOLDER`"
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err
    if not isinstance(config, Mapping) or "vanseg_format" not in config:
        raise CheckpointError(f"{path} is not a vanseg config.json (no 'vanseg_format' key)")
    if int(config["vanseg_format"]) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has vanseg_format={config['vanseg_format']}, newer than this vanseg "
            f"reads ({FORMAT_VERSION}); upgrade vanseg"
        )
    return dict(config)


def load_pretrained(source: str | Path, **hub_options: Any) -> LoadedCheckpoint:
    """Rebuild the model (eval mode, CPU) and its `ModelMeta` from an exported folder or hub id.

    Args:
        source: A folder written by :func:`save_pretrained`, a Hub id ``owner/name``, or a
            published segmentation name (``python -m vanseg.tools.weights list``).
        hub_options: ``revision``, ``cache_dir``, ``local_files_only``, ``token`` for the Hub
            (published names use vanseg's cache and ``VANSEG_OFFLINE`` instead).

    Raises:
        CheckpointError: Missing or unreadable files, or weights that do not fit the config.
    """
    if is_zoo_name(source) and not Path(source).is_dir():
        return load_checkpoint(resolve_weights(str(source), "segmentation"))
    folder = resolve_pretrained(source, **hub_options)
    config = _read_config(folder / CONFIG_NAME)
    # The gate for stored configs (vanseg.config.trust), before anything is built from it.
    config["model"] = check_model_config(config.get("model"), str(folder / CONFIG_NAME))
    try:
        meta = ModelMeta.from_dict(config)
    except (KeyError, TypeError, ValueError, CheckpointError) as err:
        raise CheckpointError(f"{folder / CONFIG_NAME} is incomplete or invalid: {err}") from err
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}")
    state = _read_weights(weights)
    model = model_with_weights(meta.model, state, str(weights))
    return LoadedCheckpoint(model, meta, config, weights)


def from_pretrained(source: str | Path, **hub_options: Any) -> nn.Module:
    """The segmentor (eval mode, CPU) of an exported folder or Hub id; see :func:`load_pretrained`.

    Use `vanseg.Segmenter.from_pretrained` to get the class names, palette and test protocol too.
    """
    return load_pretrained(source, **hub_options).model
