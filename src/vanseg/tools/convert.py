"""Convert an original VAN-Segmentation (mmseg 0.x) checkpoint into a vanseg checkpoint.

    python -m vanseg.tools.convert IN.pth OUT.ckpt backbone=van_tiny head=light_ham

The input is the ``{'meta', 'state_dict', 'optimizer'}`` file written by mmcv
(docs/reference.md §2). Keys are renamed only where vanseg's module names differ (backbone
stages, HamNet's hamburger level); every key must then match the model built from the given
backbone/head exactly, else the error lists the missing, unexpected and mis-shaped keys.
The number of classes is read from the checkpoint. The output stores the model config, so
``vanseg.load_model(OUT.ckpt)`` rebuilds the model from the file alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from vanseg.checkpoint.convert import convert_state_dict
from vanseg.checkpoint.file import save_model
from vanseg.config.compose import NO_PRETRAINED, compose_config, model_config
from vanseg.errors import CheckpointError
from vanseg.models.build import build_model_from_config
from vanseg.models.pretrained import check_and_load
from vanseg.utils.atomic import check_destination
from vanseg.utils.cli import split_overrides, tool_parser, user_errors
from vanseg.utils.safe_load import load_file

__all__ = ["convert_state_dict", "convert"]

#: The command as users type it: starts every usage and error line.
PROG = "python -m vanseg.tools.convert"

log = logging.getLogger(__name__)


def convert(
    src: str | Path,
    dst: str | Path,
    overrides: Sequence[str] = (),
    unsafe_load: bool = False,
    overwrite: bool = False,
) -> None:
    """Convert ``src`` (mmseg checkpoint) to ``dst`` for the model chosen by ``overrides``.

    ``dst`` is written atomically; an existing one is refused unless ``overwrite``, and
    ``dst`` equal to ``src`` always is.
    """
    check_destination(dst, overwrite=overwrite, sources=[src], option="--overwrite")
    ckpt = load_file(src, unsafe_load, "--unsafe-load")
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{src} is not an mmseg checkpoint: expected a dict with a 'state_dict' entry"
        )
    state = convert_state_dict(ckpt["state_dict"])
    overrides = list(overrides)
    if "decode_head.conv_seg.weight" in state and not any(
        o.startswith("data.num_classes=") for o in overrides
    ):
        overrides.append(f"data.num_classes={state['decode_head.conv_seg.weight'].shape[0]}")
    cfg = model_config(compose_config([NO_PRETRAINED, *overrides]))
    model = build_model_from_config(cfg)
    check_and_load(model, state, f"converted {src}")
    ignored = sorted(k for k in ckpt if k != "state_dict")
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), Mapping) else {}
    save_model(
        model,
        cfg,
        dst,
        overwrite=overwrite,
        source=str(src),
        source_meta={k: meta[k] for k in ("mmseg_version", "CLASSES") if k in meta},
    )
    print(f"Converted {len(state)} tensors from {src} to {dst}; not carried over: {ignored}")


@user_errors(PROG)
def main(argv: Sequence[str] | None = None) -> None:
    parser = tool_parser(PROG, __doc__)
    parser.add_argument("src", help="original mmseg checkpoint (.pth)")
    parser.add_argument("dst", help="vanseg checkpoint to write (.ckpt)")
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="allow full unpickling of SRC (only for files you trust)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace DST if it exists (never SRC itself)"
    )
    args, overrides = split_overrides(parser, argv)
    convert(args.src, args.dst, overrides, unsafe_load=args.unsafe_load, overwrite=args.overwrite)


if __name__ == "__main__":
    main()
