"""The one gate for configs read from files: what a stored config may instantiate.

A checkpoint (``vanseg.model`` and the stored training config) or an export folder
(``config.json``) says how to rebuild its model, and vanseg builds it with
``hydra.utils.instantiate``, which calls whatever ``_target_`` names. A file from someone else
must not decide which code runs, so every config that comes from a file passes
:func:`check_model_config` or :func:`check_data_config` before anything is instantiated. The
whole tree is checked first; anything not allowed is refused before any call, with one line
that names the file, the key path and the value.

Allowed:

* ``_target_`` only at the top of a stored node (``model.backbone``, ``model.neck``,
  ``model.head``, ``model.aux_head``; ``data``), and only a name on the allowlist: vanseg's own
  model builders (:data:`MODEL_TARGETS`) or data modules (:data:`DATA_TARGETS`), prefixes the
  user trusted (:func:`trust_model_targets`), and ``timm.create_model`` with a model name that
  timm knows, ``pretrained`` off and only the arguments of :data:`TIMM_ARGUMENTS`;
* ``_partial_`` and ``_recursive_`` (booleans) and ``_convert_`` (a Hydra convert mode) next to
  an allowed ``_target_``; no ``_args_`` and no other ``_..._`` key;
* plain data everywhere else: None, booleans, numbers, strings (no ``${...}`` interpolation,
  which OmegaConf would resolve), lists and dicts with string keys.

Your own ``conf/`` tree and command-line overrides are not checked: they are your code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from vanseg.errors import UntrustedConfigError

__all__ = [
    "apply_trusted_targets",
    "DATA_TARGETS",
    "MODEL_TARGETS",
    "MODEL_KEYS",
    "TIMM_ARGUMENTS",
    "check_data_config",
    "check_model_config",
    "trust_model_targets",
    "trusted_prefixes",
]

#: vanseg's model builders, as ``conf/`` names them (the only names a stored model node uses).
MODEL_TARGETS = frozenset(
    {
        "vanseg.models.van_tiny",
        "vanseg.models.van_small",
        "vanseg.models.van_base",
        "vanseg.models.van_large",
        "vanseg.models.van_test",
        "vanseg.models.VAN",
        "vanseg.models.LightHamHead",
        "vanseg.models.HamHead",
        "vanseg.models.UPerHead",
        "vanseg.models.FPN",
        "vanseg.models.FPNHead",
        "vanseg.models.FCNHead",
    }
)
#: vanseg's data modules (the ``data`` node stored in a training checkpoint).
DATA_TARGETS = frozenset({"vanseg.data.ADE20KDataModule", "vanseg.data.SyntheticDataModule"})
TIMM_CREATE_MODEL = "timm.create_model"
#: Arguments a stored ``timm.create_model`` node may pass: architecture options only, none
#: that names a file, a URL or a pretrained configuration.
TIMM_ARGUMENTS = frozenset(
    {
        "model_name",
        "pretrained",
        "features_only",
        "out_indices",
        "output_stride",
        "drop_rate",
        "drop_path_rate",
        "in_chans",
        "num_classes",
        "global_pool",
    }
)
#: The nodes of a stored model config that may hold a ``_target_``.
MODEL_KEYS = ("backbone", "neck", "head", "aux_head")
_HYDRA_FLAGS = {"_partial_": bool, "_recursive_": bool, "_convert_": str}
_CONVERT_MODES = {"none", "partial", "object", "all"}

_user_prefixes: set[str] = set()


def trust_model_targets(*prefixes: str) -> None:
    """Allow stored configs to name targets under these import prefixes (your own code).

    ``vanseg.trust_model_targets("mypkg.models")`` allows ``mypkg.models.MyBackbone`` and
    anything else under ``mypkg.models``. The same list can be given in your own config as
    ``trusted_targets: [mypkg.models]`` (read from your config, never from the file opened).
    """
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix.strip(".") or prefix != prefix.strip():
            raise UntrustedConfigError(f"trusted target prefix must be a module path: {prefix!r}")
        _user_prefixes.add(prefix.strip("."))


def trusted_prefixes() -> tuple[str, ...]:
    """The import prefixes trusted with :func:`trust_model_targets`, sorted."""
    return tuple(sorted(_user_prefixes))


def _user_trusted(target: str) -> bool:
    return any(target == p or target.startswith(p + ".") for p in _user_prefixes)


def _refuse(source: str, path: str, what: str) -> UntrustedConfigError:
    return UntrustedConfigError(
        f"{source}: {path} {what}; refused before building anything (a file must not decide "
        "which code runs). If the file is yours and names your own code, trust its import "
        "prefix: vanseg.trust_model_targets('pkg.module') or trusted_targets=[pkg.module] "
        "(docs/bad_input.md)"
    )


def _check_plain(value: Any, source: str, path: str) -> None:
    """Plain data only: no objects, no interpolations, no ``_target_`` below the top."""
    if value is None or isinstance(value, bool | int | str):
        if isinstance(value, str) and "${" in value:
            raise _refuse(source, path, f"holds an interpolation {value!r}")
        return
    if isinstance(value, float):
        if math.isnan(value):
            raise _refuse(source, path, "is NaN")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, source, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _refuse(source, path, f"has a non-string key {key!r}")
            if key.startswith("_") and key.endswith("_") and len(key) > 2:
                raise _refuse(source, f"{path}.{key}", "is a Hydra instruction in a nested node")
            _check_plain(item, source, f"{path}.{key}")
        return
    raise _refuse(source, path, f"is a {type(value).__name__}, not plain data")


def _check_node(
    node: Any, source: str, path: str, allowed: Iterable[str], timm: bool = False
) -> None:
    """One stored node: ``None`` or a dict whose ``_target_`` is allowed, then plain data."""
    if node is None:
        return
    if not isinstance(node, Mapping):
        raise _refuse(source, path, f"is a {type(node).__name__}, not a config node")
    target = node.get("_target_")
    if not isinstance(target, str):
        raise _refuse(source, f"{path}._target_", f"is {target!r}, not a name vanseg builds")
    if target == TIMM_CREATE_MODEL and timm:
        _check_timm(node, source, path)
    elif target not in allowed and not _user_trusted(target):
        raise _refuse(source, f"{path}._target_", f"names {target!r}, which is not allowed")
    for key, value in node.items():
        if key == "_target_":
            continue
        if key in _HYDRA_FLAGS:
            if not isinstance(value, _HYDRA_FLAGS[key]) or (
                key == "_convert_" and value not in _CONVERT_MODES
            ):
                raise _refuse(source, f"{path}.{key}", f"is {value!r}")
            continue
        if not isinstance(key, str):
            raise _refuse(source, path, f"has a non-string key {key!r}")
        if key.startswith("_") and key.endswith("_") and len(key) > 2:
            raise _refuse(source, f"{path}.{key}", "is not allowed in a stored config")
        _check_plain(value, source, f"{path}.{key}")


def _check_timm(node: Mapping[str, Any], source: str, path: str) -> None:
    extra = sorted(set(node) - TIMM_ARGUMENTS - set(_HYDRA_FLAGS) - {"_target_"})
    if extra:
        raise _refuse(source, f"{path}.{extra[0]}", "is not an architecture option of timm")
    if node.get("pretrained") not in (None, False):
        raise _refuse(source, f"{path}.pretrained", "must be false (weights come with the file)")
    name = node.get("model_name")
    import timm

    if not isinstance(name, str) or name not in timm.list_models():
        raise _refuse(source, f"{path}.model_name", f"is {name!r}, not a timm model name")


def check_model_config(model_cfg: Any, source: str, root: str = "model") -> dict[str, Any]:
    """Validate a stored ``{backbone, neck, head, aux_head}`` config; return a plain copy.

    The copy has every node (``None`` where absent) and ``backbone.pretrained`` set to
    ``None``: a stored model is rebuilt without reading any other file.

    Args:
        model_cfg: The config as read from the file.
        source: The file, named in the error.
        root: The key path of ``model_cfg`` in that file (``model`` in a checkpoint).

    Raises:
        UntrustedConfigError: Before anything is imported or called.
    """
    if not isinstance(model_cfg, Mapping):
        raise _refuse(source, root, f"is a {type(model_cfg).__name__}, not a model config")
    unexpected = sorted(str(k) for k in model_cfg if k not in MODEL_KEYS)
    if unexpected:
        raise _refuse(source, f"{root}.{unexpected[0]}", "is not a model node")
    for key in MODEL_KEYS:
        _check_node(model_cfg.get(key), source, f"{root}.{key}", MODEL_TARGETS, timm=True)
    if not model_cfg.get("backbone") or not model_cfg.get("head"):
        raise _refuse(source, root, "lacks a backbone or a head")
    out = {key: _plain_copy(model_cfg.get(key)) for key in MODEL_KEYS}
    if "pretrained" in out["backbone"] and out["backbone"]["_target_"] != TIMM_CREATE_MODEL:
        out["backbone"]["pretrained"] = None  # the weights come with the file
    return out


def check_data_config(data_cfg: Any, source: str, root: str = "config.data") -> dict[str, Any]:
    """Validate a stored ``data`` config (a vanseg data module); return a plain copy."""
    _check_node(data_cfg, source, root, DATA_TARGETS)
    return _plain_copy(data_cfg)


def apply_trusted_targets(cfg: Mapping[str, Any]) -> None:
    """Trust the prefixes of ``trusted_targets`` in the user's own config (entry points)."""
    prefixes = cfg.get("trusted_targets") or []
    if isinstance(prefixes, str) or not all(isinstance(p, str) for p in prefixes):
        raise UntrustedConfigError(
            f"trusted_targets must be a list of import prefixes, got {prefixes!r}"
        )
    trust_model_targets(*prefixes)


def _plain_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_copy(v) for v in value]
    return value
