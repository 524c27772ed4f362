"""Parameters and MACs of a segmentor, counted as the VAN-Segmentation tables count them.

    python -m vanseg.tools.flops backbone=van_base head=light_ham
    python -m vanseg.tools.flops --all          # the 17 published configurations

Convention (docs/reference.md §1): params = every trainable parameter of the whole segmentor,
auxiliary head included; MACs = ``torchprofile.profile_macs`` of backbone + neck + decode
head + the final resize to the input size, in eval mode (NMF runs its 7 eval steps), on a
1x3x512x512 input. The tables print these MACs as "GFLOPs". Ham heads come out 2 MACs lower
than the original, whose NMF does two more integer shape multiplications that the JIT trace
records; that is 2e-9 G.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from vanseg.config.compose import NO_PRETRAINED, compose_config, model_config
from vanseg.models.build import build_model_from_config
from vanseg.utils.atomic import atomic_write_text
from vanseg.utils.cli import split_overrides, tool_parser, user_errors

__all__ = ["Complexity", "PUBLISHED", "count_params", "count_macs", "measure"]

#: The command as users type it: starts every usage and error line.
PROG = "python -m vanseg.tools.flops"


@dataclass(frozen=True)
class Published:
    """A row of the published table (README params/FLOPs are None where not given)."""

    backbone: str
    head: str
    params: str | None
    gflops: str | None
    miou: float


#: The 17 published configurations (VAN-Segmentation README; docs/reference.md §1).
PUBLISHED: tuple[Published, ...] = (
    Published("van_tiny", "light_ham_d256", "4.2M", "6.5G", 40.9),
    Published("van_tiny", "light_ham", "4.9M", "11.3G", 42.3),
    Published("van_small", "light_ham", "14.7M", "21.4G", 45.7),
    Published("van_base", "light_ham", "27.4M", "34.4G", 49.6),
    Published("van_large", "light_ham", "45.6M", "55.0G", 51.0),
    Published("van_tiny", "hamnet", "11.9M", "50.8G", 41.5),
    Published("van_small", "hamnet", "24.2M", "100.6G", 45.1),
    Published("van_base", "hamnet", "36.9M", "153.6G", 48.7),
    Published("van_large", "hamnet", "55.1M", "227.7G", 50.2),
    Published("van_tiny", "upernet", "32.1M", "214.7", 41.1),
    Published("van_small", "upernet", "43.8M", "224.0G", 44.9),
    Published("van_base", "upernet", "56.6M", "237.1G", 48.3),
    Published("van_large", "upernet", "74.7M", "257.7G", 50.1),
    Published("van_tiny", "fpn", None, None, 38.5),
    Published("van_small", "fpn", None, None, 42.9),
    Published("van_base", "fpn", None, None, 46.7),
    Published("van_large", "fpn", None, None, 48.1),
)


@dataclass(frozen=True)
class Complexity:
    """Counts of one model."""

    params: int  # trainable, auxiliary head included (the published convention)
    params_no_aux: int
    macs: int  # torchprofile, eval mode

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_params(module: nn.Module | None) -> int:
    """Trainable parameters of ``module`` (0 for None)."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_macs(model: nn.Module, shape: Sequence[int] = (512, 512)) -> int:
    """torchprofile MACs of ``model(images)`` on one random (1, 3, H, W) image, eval mode."""
    from torchprofile import profile_macs

    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # torchprofile warns about every op it does not count (rand, normalize, ...).
            warnings.simplefilter("ignore")
            return int(profile_macs(model, torch.randn(1, 3, *shape)))
    finally:
        model.train(was_training)


def measure(model: nn.Module, shape: Sequence[int] = (512, 512)) -> Complexity:
    """Params (with and without the auxiliary head) and MACs of a :class:`Segmentor`."""
    total = count_params(model)
    return Complexity(
        total,
        total - count_params(getattr(model, "auxiliary_head", None)),
        count_macs(model, shape),
    )


def _row_for(overrides: Sequence[str], shape: Sequence[int]) -> dict:
    cfg = compose_config([NO_PRETRAINED, *overrides], return_hydra_config=True)
    model = build_model_from_config(model_config(cfg))
    result = measure(model, shape)
    return {
        "backbone": cfg.hydra.runtime.choices.backbone,
        "head": cfg.hydra.runtime.choices.head,
        **asdict(result),
        "gmacs": round(result.gmacs, 1),
    }


@user_errors(PROG)
def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = tool_parser(PROG, __doc__)
    parser.add_argument("--all", action="store_true", help="all 17 published configurations")
    parser.add_argument("--shape", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args, overrides = split_overrides(parser, argv)

    console = Console(width=None if Console().is_terminal else 160)
    table = Table(
        title=f"Params and GMACs (torchprofile, eval mode, 1x3x{args.shape[0]}x{args.shape[1]})"
    )
    for col in ("backbone", "head", "params", "params w/o aux", "GMACs"):
        table.add_column(col, justify="right" if col[0] in "pG" else "left")
    rows = []
    if args.all:
        for col in ("published params", "published FLOPs", "published mIoU", "match"):
            table.add_column(col, justify="right")
        for pub in PUBLISHED:
            row = _row_for([f"backbone={pub.backbone}", f"head={pub.head}", *overrides], args.shape)
            params_ok = pub.params is None or f"{row['params'] / 1e6:.1f}M" == pub.params
            flops_ok = pub.gflops is None or f"{row['gmacs']:.1f}" == pub.gflops.rstrip("G")
            row.update(published=asdict(pub), match=params_ok and flops_ok)
            rows.append(row)
            table.add_row(
                pub.backbone,
                pub.head,
                f"{row['params']:,}",
                f"{row['params_no_aux']:,}",
                f"{row['gmacs']:.1f}",
                pub.params or "-",
                pub.gflops or "-",
                f"{pub.miou}",
                "yes" if row["match"] else "NO",
            )
    else:
        row = _row_for(overrides, args.shape)
        rows.append(row)
        table.add_row(
            row["backbone"],
            row["head"],
            f"{row['params']:,}",
            f"{row['params_no_aux']:,}",
            f"{row['gmacs']:.1f}",
        )
    console.print(table)
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2), overwrite=args.overwrite)
    return rows


if __name__ == "__main__":
    main()
