"""Export a segmentor to ONNX with dynamic batch, height and width, and check it numerically.

    python -m vanseg.tools.export ckpt_path=model.ckpt [format=onnx] [output=model.onnx]
    python -m vanseg.tools.export ckpt_path=model.ckpt format=safetensors [output=FOLDER]
        [metrics=eval/metrics.json] [push=owner/name]

``format=safetensors`` writes a pickle-free folder (``model.safetensors`` + ``config.json``) for
``vanseg.from_pretrained``; see `vanseg.tools.export_safetensors`. The rest of this docstring
is about ONNX.

Options are in ``conf/export.yaml``. The graph is the Segmentor's forward: input ``images``,
float32 ``(B, 3, H, W)`` normalised with the ImageNet mean/std in RGB order (the resize and
normalisation of `vanseg.inference.passes` stay outside the graph); output ``logits``,
``(B, K, H, W)`` at the input size. The model's metadata (``metadata_props``) records the
class count, mean, std and the NMF seed.

**NMF bases (Ham heads).** In PyTorch the bases are ``torch.rand`` at every forward; a random
op in the graph would make ONNX outputs differ from run to run, and a seeded generator cannot
be exported. The export therefore embeds *constant* bases: for every image, the bases that
``NMF2D.init_bases`` draws for a single image with ``eval_seed = <eval_seed>``. So an exported
model gives, for each image, the logits that PyTorch gives for that image alone (batch 1) with
``head.eval_seed=<eval_seed>``; the check below verifies exactly that. (For a PyTorch batch of
B > 1 with ``eval_seed``, image i gets the i-th slice of one ``(B, D, R)`` draw instead.)

After exporting, onnxruntime and PyTorch run the same random inputs at every ``check_sizes``
entry (with ``dynamic``, at least two sizes); the tool prints the largest absolute logit
difference and fails if it exceeds ``atol``. With ``fold=true`` (default) the exported graph is
:func:`vanseg.accel.optimize.fold_model` of the checkpoint (eval BatchNorms and layer scales folded
into the convolutions) and the check compares it with the unfolded PyTorch model.

Known limit: UperNet's pyramid pooling uses adaptive average pooling to 2, 3 and 6 bins, which
ONNX cannot express for a dynamic input size; export it with ``dynamic=false``.
"""

from __future__ import annotations

import argparse
import importlib
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table
from torch import nn

from vanseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vanseg.errors import ConfigError, VansegError
from vanseg.models.layers.matrix_decomposition import NMF2D
from vanseg.utils.atomic import atomic_path, check_destination
from vanseg.utils.cli import split_overrides, user_errors

__all__ = [
    "check_onnx",
    "compare_onnx",
    "export_onnx",
    "fixed_nmf_bases",
    "main",
    "raise_if_mismatch",
    "seeded_eval",
]


def _require(name: str) -> Any:
    """Import an optional dependency of the export, with the install command on failure."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ConfigError(
            f"{name} is not installed; ONNX export needs the onnx extra: pip install -e '.[onnx]'"
        ) from err


def _nmf_modules(model: nn.Module) -> list[NMF2D]:
    return [m for m in model.modules() if isinstance(m, NMF2D)]


@contextmanager
def seeded_eval(model: nn.Module, seed: int) -> Iterator[None]:
    """Eval mode with ``eval_seed = seed`` on every NMF module; both restored afterwards."""
    was_training = model.training
    saved = [(m, m.eval_seed) for m in _nmf_modules(model)]
    model.eval()
    for module, _ in saved:
        module.eval_seed = seed
    try:
        yield
    finally:
        for module, old in saved:
            module.eval_seed = old
        model.train(was_training)


@contextmanager
def fixed_nmf_bases(model: nn.Module, seed: int) -> Iterator[None]:
    """Within the block, every NMF module uses constant bases (see the module docstring).

    The constants come from the module's own ``init_bases`` for one image with ``eval_seed``
    set, computed at the first call and cached: run one forward before tracing so that the
    generator (which cannot be exported) never appears in the traced graph.
    """
    modules = _nmf_modules(model)
    for module in modules:
        # One entry per module (its width D never changes). Not keyed by `dim`: while tracing,
        # sizes may be tensors, which would miss the cache and trace the generator.
        cache: list[torch.Tensor] = []

        def init_bases(
            batch: int, dim: int, device: torch.device, module=module, cache=cache
        ) -> torch.Tensor:
            if not cache:
                cache.append(NMF2D.init_bases(module, 1, dim, torch.device("cpu")))
            return cache[0].to(device).expand(batch, -1, -1)  # (B, D, R), same per image

        module.init_bases = init_bases  # instance attribute: shadows the method
    try:
        with seeded_eval(model, seed):
            yield
    finally:
        for module in modules:
            del module.init_bases


def _check_exportable(model: nn.Module, dynamic: bool) -> None:
    pools = [
        m
        for m in model.modules()
        if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1))
    ]
    if dynamic and pools:
        raise ConfigError(
            f"the model uses adaptive average pooling to {[p.output_size for p in pools]} bins "
            "(UperNet's pyramid pooling), which ONNX cannot express for dynamic input sizes; "
            "export with dynamic=false (fixed at check_sizes[0])"
        )


def export_onnx(
    model: nn.Module,
    path: str | Path,
    sample_size: Sequence[int] = (512, 512),
    eval_seed: int = 0,
    opset: int = 18,
    dynamo: bool = True,
    dynamic: bool = True,
) -> Path:
    """Write ``model`` (images -> logits) as ONNX; see the module docstring for the graph.

    Args:
        model: Segmentor (moved to the CPU for the export).
        path: Output ``.onnx`` file (one file: weights are stored inside).
        sample_size: ``(H, W)`` of the example input; the only size when not ``dynamic``.
        eval_seed: Seed of the constant NMF bases of Ham heads.
        opset: ONNX opset version.
        dynamo: Use ``torch.export`` (PyTorch's default exporter); ``False`` uses the legacy
            TorchScript tracer.
        dynamic: Dynamic batch, height and width.
    """
    _check_exportable(model, dynamic)
    for name in ("onnx", "onnxscript") if dynamo else ("onnx",):
        _require(name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu()
    sample = torch.randn(1, 3, *sample_size, generator=torch.Generator().manual_seed(0))
    kwargs: dict[str, Any] = {"input_names": ["images"], "output_names": ["logits"]}
    if dynamo and dynamic:
        dim = torch.export.Dim.DYNAMIC
        kwargs["dynamic_shapes"] = ({0: dim, 2: dim, 3: dim},)
    elif dynamic:
        axes = {0: "batch", 2: "height", 3: "width"}
        kwargs["dynamic_axes"] = {"images": axes, "logits": axes}
    if dynamo:
        kwargs.update(external_data=False, verbose=False)
    with fixed_nmf_bases(model, eval_seed), torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter announces its deprecation and notes traced shape arithmetic;
        # whether the graph is right for other sizes is what check_onnx verifies.
        warnings.simplefilter("ignore")
        model(sample)  # fills the constant NMF bases outside the trace
        torch.onnx.export(model, (sample,), str(path), opset_version=opset, dynamo=dynamo, **kwargs)
    _add_metadata(path, model, eval_seed)
    return path


def _add_metadata(path: Path, model: nn.Module, eval_seed: int) -> None:
    onnx = _require("onnx")
    proto = onnx.load(str(path))
    props = {
        "num_classes": str(getattr(model, "num_classes", "")),
        "input": "RGB float32 (B, 3, H, W): (pixel - mean) / std",
        "mean": ",".join(f"{m:g}" for m in IMAGENET_MEAN),
        "std": ",".join(f"{s:g}" for s in IMAGENET_STD),
        "nmf_bases": f"constant, eval_seed={eval_seed} (single-image draw, same for every image)",
    }
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))


def compare_onnx(
    model: nn.Module, path: str | Path, sizes: Sequence[Sequence[int]], eval_seed: int = 0
) -> list[dict[str, Any]]:
    """Run onnxruntime and PyTorch (batch 1, ``eval_seed``) on random inputs of each ``(H, W)``.

    Returns:
        One row per size: ``size``, ``max_abs_diff`` (inf if the output shapes differ) and
        ``max_abs_logit`` (for scale).
    """
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    rows = []
    for height, width in sizes:
        images = torch.randn(1, 3, height, width, generator=generator)
        with seeded_eval(model, eval_seed), torch.no_grad():
            expected = model(images).numpy()
        (got,) = session.run(["logits"], {"images": images.numpy()})
        same_shape = got.shape == expected.shape
        diff = float(np.abs(got - expected).max()) if same_shape else float("inf")
        rows.append(
            {
                "size": [height, width],
                "max_abs_diff": diff,
                "max_abs_logit": float(np.abs(expected).max()),
            }
        )
    return rows


def raise_if_mismatch(rows: list[dict[str, Any]], path: str | Path, atol: float) -> None:
    """Raise :class:`ConfigError` naming every size whose difference exceeds ``atol``."""
    bad = [row for row in rows if not row["max_abs_diff"] <= atol]
    if bad:
        raise ConfigError(
            f"{path}: onnxruntime differs from PyTorch by more than atol={atol:g} at "
            + ", ".join(f"{r['size'][0]}x{r['size'][1]} ({r['max_abs_diff']:.3g})" for r in bad)
            + ". The graph is wrong for these sizes (often a size frozen during tracing)."
        )


def check_onnx(
    model: nn.Module,
    path: str | Path,
    sizes: Sequence[Sequence[int]],
    eval_seed: int = 0,
    atol: float = 1e-3,
) -> list[dict[str, Any]]:
    """:func:`compare_onnx`, then :func:`raise_if_mismatch`; returns the rows."""
    rows = compare_onnx(model, path, sizes, eval_seed)
    raise_if_mismatch(rows, path, atol)
    return rows


def _print_rows(rows: list[dict[str, Any]], path: Path, atol: float, console: Console) -> None:
    table = Table(title=f"onnxruntime vs PyTorch: {path}")
    for col in ("input H x W", "max |logit diff|", "max |logit|", f"<= {atol:g}"):
        table.add_column(col, justify="right")
    for row in rows:
        size = f"{row['size'][0]} x {row['size'][1]}"
        ok = "yes" if row["max_abs_diff"] <= atol else "NO"
        table.add_row(size, f"{row['max_abs_diff']:.3g}", f"{row['max_abs_logit']:.3g}", ok)
    console.print(table)


@user_errors("python -m vanseg.tools.export")
def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Command line entry; returns the check rows (empty with ``check=false``)."""
    parser = argparse.ArgumentParser(
        prog="python -m vanseg.tools.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _, overrides = split_overrides(parser, argv)
    from vanseg.accel.optimize import fold_model
    from vanseg.checkpoint.file import load_model
    from vanseg.config.compose import compose_config
    from vanseg.config.trust import apply_trusted_targets

    cfg = compose_config(overrides, config_name="export")
    apply_trusted_targets(cfg)
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        parser.error("give the checkpoint: ckpt_path=PATH")
    opts = OmegaConf.to_container(cfg, resolve=True)
    if opts["format"] == "safetensors":
        _export_safetensors(opts, parser)
        return []
    if opts["format"] != "onnx":
        parser.error(f"format={opts['format']} is not supported; use format=onnx or safetensors")
    sizes = [tuple(int(v) for v in size) for size in opts["check_sizes"]]
    if not sizes or (opts["dynamic"] and opts["check"] and len(sizes) < 2):
        parser.error("a dynamic export is checked at two or more sizes: check_sizes=[[H,W],...]")
    ckpt = Path(opts["ckpt_path"])
    output = Path(opts["output"]) if opts["output"] else ckpt.with_suffix(".onnx")
    check_destination(output, overwrite=opts["overwrite"], sources=[ckpt])

    model = load_model(ckpt, unsafe_load=opts["unsafe_load"])
    # The folded copy (vanseg.accel.optimize.fold_model) has no BatchNorm or layer-scale nodes; the
    # check below compares onnxruntime with the unfolded PyTorch model.
    graph = fold_model(model) if opts["fold"] else model
    start = time.perf_counter()
    with atomic_path(output, overwrite=opts["overwrite"], sources=[ckpt]) as tmp:
        export_onnx(
            graph, tmp, sizes[0], opts["eval_seed"], opts["opset"], opts["dynamo"], opts["dynamic"]
        )
    console = Console()
    console.print(f"wrote {output} in {time.perf_counter() - start:.1f} s")
    if not opts["check"]:
        return []
    rows = compare_onnx(model, output, sizes if opts["dynamic"] else sizes[:1], opts["eval_seed"])
    _print_rows(rows, output, opts["atol"], console)
    raise_if_mismatch(rows, output, opts["atol"])
    return rows


def _export_safetensors(opts: dict[str, Any], parser: argparse.ArgumentParser) -> None:
    """``format=safetensors``: see `vanseg.tools.export_safetensors`."""
    from vanseg.tools.export_safetensors import export_safetensors

    try:
        folder = export_safetensors(
            opts["ckpt_path"],
            opts["output"],
            opts["overwrite"],
            opts["unsafe_load"],
            metrics=opts.get("metrics"),
            license=opts.get("license") or "apache-2.0",
            dataset=opts.get("dataset"),
            push=opts.get("push"),
        )
    except VansegError as err:
        parser.error(str(err))
    Console().print(f"wrote {folder} (model.safetensors + config.json + README.md; verified)")
    if opts.get("push"):
        Console().print(f"pushed to https://huggingface.co/{opts['push']}")


if __name__ == "__main__":
    main()
