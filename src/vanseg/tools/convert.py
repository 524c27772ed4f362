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

from collections.abc import Sequence

from vanseg.checkpoint.mmseg import convert, convert_state_dict
from vanseg.utils.cli import split_overrides, tool_parser, user_errors

__all__ = ["convert_state_dict", "convert"]

#: The command as users type it: starts every usage and error line.
PROG = "python -m vanseg.tools.convert"


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
    print(
        convert(
            args.src, args.dst, overrides, unsafe_load=args.unsafe_load, overwrite=args.overwrite
        )
    )


if __name__ == "__main__":
    main()
