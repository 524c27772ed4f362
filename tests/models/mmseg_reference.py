"""An independent, functional re-statement of the original VAN-Segmentation models.

Written from docs/reference.md §2 and §4-6 only (no vanseg imports): it builds state dicts with
the ORIGINAL mmseg key names and shapes, and runs the original forward directly on such a
state dict. Tests use it to check that converted checkpoints give the same logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SIZES = {
    "van_tiny": ((32, 64, 160, 256), (3, 3, 5, 2)),
    "van_small": ((64, 128, 320, 512), (2, 2, 4, 2)),
    "van_test": ((32, 32, 64, 64), (1, 1, 1, 1)),  # vanseg's test size, not published
}
MLP = (8, 8, 4, 4)


# ----------------------------------------------------------------------------- state dicts
def _bn(sd, prefix, c, g):
    sd[f"{prefix}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
    sd[f"{prefix}.bias"] = 0.1 * torch.randn(c, generator=g)
    sd[f"{prefix}.running_mean"] = 0.1 * torch.randn(c, generator=g)
    sd[f"{prefix}.running_var"] = 0.5 + torch.rand(c, generator=g)
    sd[f"{prefix}.num_batches_tracked"] = torch.tensor(100, dtype=torch.int64)


def _affine(sd, prefix, c, g):
    sd[f"{prefix}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
    sd[f"{prefix}.bias"] = 0.1 * torch.randn(c, generator=g)


def _conv(sd, prefix, cout, cin, k, g, bias=True):
    sd[f"{prefix}.weight"] = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5
    if bias:
        sd[f"{prefix}.bias"] = 0.1 * torch.randn(cout, generator=g)


def _conv_module(sd, prefix, cout, cin, k, norm, g):
    _conv(sd, f"{prefix}.conv", cout, cin, k, g, bias=norm is None)
    if norm == "bn":
        _bn(sd, f"{prefix}.bn", cout, g)
    elif norm == "gn":
        _affine(sd, f"{prefix}.gn", cout, g)


def backbone_state_dict(size: str, g: torch.Generator, prefix: str = "backbone.") -> dict:
    dims, depths = SIZES[size]
    sd: dict[str, torch.Tensor] = {}
    cin = 3
    for s in range(4):
        c, hidden = dims[s], dims[s] * MLP[s]
        p = f"{prefix}patch_embed{s + 1}"
        _conv(sd, f"{p}.proj", c, cin, 7 if s == 0 else 3, g)
        _bn(sd, f"{p}.norm", c, g)
        for i in range(depths[s]):
            b = f"{prefix}block{s + 1}.{i}"
            sd[f"{b}.layer_scale_1"] = 0.5 + torch.rand(c, generator=g)
            sd[f"{b}.layer_scale_2"] = 0.5 + torch.rand(c, generator=g)
            _bn(sd, f"{b}.norm1", c, g)
            _bn(sd, f"{b}.norm2", c, g)
            _conv(sd, f"{b}.attn.proj_1", c, c, 1, g)
            _conv(sd, f"{b}.attn.spatial_gating_unit.conv0", c, 1, 5, g)
            _conv(sd, f"{b}.attn.spatial_gating_unit.conv_spatial", c, 1, 7, g)
            _conv(sd, f"{b}.attn.spatial_gating_unit.conv1", c, c, 1, g)
            _conv(sd, f"{b}.attn.proj_2", c, c, 1, g)
            _conv(sd, f"{b}.mlp.fc1", hidden, c, 1, g)
            _conv(sd, f"{b}.mlp.dwconv.dwconv", hidden, 1, 3, g)
            _conv(sd, f"{b}.mlp.fc2", c, hidden, 1, g)
        _affine(sd, f"{prefix}norm{s + 1}", c, g)
        cin = c
    return sd


def head_state_dict(size: str, head: str, g: torch.Generator, k: int = 150) -> dict:
    dims = SIZES[size][0]
    sd: dict[str, torch.Tensor] = {}
    if head in ("light_ham", "light_ham_d256"):
        h = 256 if head == "light_ham_d256" else {"van_tiny": 480, "van_test": 64}.get(size, 512)
        c = 256 if head == "light_ham_d256" else 512
        _conv(sd, "decode_head.conv_seg", k, c, 1, g)
        _conv_module(sd, "decode_head.squeeze", h, sum(dims[1:]), 1, "gn", g)
        _conv_module(sd, "decode_head.hamburger.ham_in", h, h, 1, None, g)
        _conv_module(sd, "decode_head.hamburger.ham_out", h, h, 1, "gn", g)
        _conv_module(sd, "decode_head.align", c, h, 1, "gn", g)
    elif head == "hamnet":
        _conv(sd, "decode_head.conv_seg", k, 512, 1, g)
        _conv_module(sd, "decode_head.squeeze", 512, dims[3], 3, "gn", g)
        _conv_module(sd, "decode_head.ham_in", 512, 512, 1, None, g)
        _conv_module(sd, "decode_head.ham_out", 512, 512, 1, "gn", g)
        _conv_module(sd, "decode_head.align", 512, 512, 3, "gn", g)
        _conv_module(sd, "decode_head.conv_cat", 512, dims[3] + 512, 3, "gn", g)
        _conv(sd, "auxiliary_head.conv_seg", k, 256, 1, g)
        _conv_module(sd, "auxiliary_head.convs.0", 256, dims[2], 3, "gn", g)
    elif head == "upernet":
        _conv(sd, "decode_head.conv_seg", k, 512, 1, g)
        for i in range(4):
            _conv_module(sd, f"decode_head.psp_modules.{i}.1", 512, dims[3], 1, "bn", g)
        _conv_module(sd, "decode_head.bottleneck", 512, dims[3] + 4 * 512, 3, "bn", g)
        for i in range(3):
            _conv_module(sd, f"decode_head.lateral_convs.{i}", 512, dims[i], 1, "bn", g)
        for i in range(3):
            _conv_module(sd, f"decode_head.fpn_convs.{i}", 512, 512, 3, "bn", g)
        _conv_module(sd, "decode_head.fpn_bottleneck", 512, 2048, 3, "bn", g)
        _conv(sd, "auxiliary_head.conv_seg", k, 256, 1, g)
        _conv_module(sd, "auxiliary_head.convs.0", 256, dims[2], 3, "bn", g)
    elif head == "fpn":
        for i in range(4):
            _conv_module(sd, f"neck.lateral_convs.{i}", 256, dims[i], 1, None, g)
        for i in range(4):
            _conv_module(sd, f"neck.fpn_convs.{i}", 256, 256, 3, None, g)
        _conv(sd, "decode_head.conv_seg", k, 128, 1, g)
        for lvl in range(4):
            for j in range(max(1, lvl)):
                cin = 256 if j == 0 else 128
                _conv_module(
                    sd, f"decode_head.scale_heads.{lvl}.{2 * j if lvl else 0}", 128, cin, 3, "bn", g
                )
    else:
        raise ValueError(head)
    return sd


def original_checkpoint(size: str, head: str, seed: int = 0) -> dict:
    """A checkpoint in the mmcv layout: {'meta', 'state_dict', 'optimizer'}."""
    g = torch.Generator().manual_seed(seed)
    sd = backbone_state_dict(size, g)
    sd.update(head_state_dict(size, head, g))
    return {
        "meta": {"mmseg_version": "0.21.1", "iter": 160000, "CLASSES": ("wall", "building")},
        "state_dict": sd,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0}]},
    }


# ----------------------------------------------------------------------------- forward
def _up(x, size, mode="bilinear"):
    return F.interpolate(
        x, size=size, mode=mode, align_corners=False if mode == "bilinear" else None
    )


def _bn_f(x, sd, p):
    return F.batch_norm(
        x,
        sd[f"{p}.running_mean"],
        sd[f"{p}.running_var"],
        sd[f"{p}.weight"],
        sd[f"{p}.bias"],
        False,
        0.1,
        1e-5,
    )


def _cm(x, sd, p, norm, k, act=True):
    """mmcv ConvModule: conv, norm, ReLU."""
    x = F.conv2d(x, sd[f"{p}.conv.weight"], sd.get(f"{p}.conv.bias"), padding=k // 2)
    if norm == "bn":
        x = _bn_f(x, sd, f"{p}.bn")
    elif norm == "gn":
        x = F.group_norm(x, 32, sd[f"{p}.gn.weight"], sd[f"{p}.gn.bias"], 1e-5)
    return F.relu(x) if act else x


def backbone_forward(x, sd, size, strides=(4, 2, 2, 2)):
    dims, depths = SIZES[size]
    outs = []
    for s in range(4):
        p = f"backbone.patch_embed{s + 1}"
        k = 7 if s == 0 else 3
        x = F.conv2d(x, sd[f"{p}.proj.weight"], sd[f"{p}.proj.bias"], strides[s], k // 2)
        x = _bn_f(x, sd, f"{p}.norm")
        c = dims[s]
        for i in range(depths[s]):
            b = f"backbone.block{s + 1}.{i}"
            y = _bn_f(x, sd, f"{b}.norm1")
            a = F.conv2d(y, sd[f"{b}.attn.proj_1.weight"], sd[f"{b}.attn.proj_1.bias"])
            a = F.gelu(a)
            g = f"{b}.attn.spatial_gating_unit"
            attn = F.conv2d(a, sd[f"{g}.conv0.weight"], sd[f"{g}.conv0.bias"], padding=2, groups=c)
            attn = F.conv2d(
                attn,
                sd[f"{g}.conv_spatial.weight"],
                sd[f"{g}.conv_spatial.bias"],
                padding=9,
                dilation=3,
                groups=c,
            )
            attn = F.conv2d(attn, sd[f"{g}.conv1.weight"], sd[f"{g}.conv1.bias"])
            a = a * attn
            a = F.conv2d(a, sd[f"{b}.attn.proj_2.weight"], sd[f"{b}.attn.proj_2.bias"]) + y
            x = x + sd[f"{b}.layer_scale_1"].view(-1, 1, 1) * a
            y = _bn_f(x, sd, f"{b}.norm2")
            m = F.conv2d(y, sd[f"{b}.mlp.fc1.weight"], sd[f"{b}.mlp.fc1.bias"])
            m = F.conv2d(
                m,
                sd[f"{b}.mlp.dwconv.dwconv.weight"],
                sd[f"{b}.mlp.dwconv.dwconv.bias"],
                padding=1,
                groups=m.shape[1],
            )
            m = F.conv2d(F.gelu(m), sd[f"{b}.mlp.fc2.weight"], sd[f"{b}.mlp.fc2.bias"])
            x = x + sd[f"{b}.layer_scale_2"].view(-1, 1, 1) * m
        n = f"backbone.norm{s + 1}"
        x = F.layer_norm(x.permute(0, 2, 3, 1), (c,), sd[f"{n}.weight"], sd[f"{n}.bias"], 1e-6)
        x = x.permute(0, 3, 1, 2).contiguous()
        outs.append(x)
    return outs


def nmf(x, rank, steps):
    """Original NMF2D forward: one torch.rand draw (CPU generator), `steps` updates."""
    b, c, h, w = x.shape
    x = x.view(b, c, h * w)
    bases = F.normalize(torch.rand((b, c, rank)), dim=1)
    coef = F.softmax(torch.bmm(x.transpose(1, 2), bases), dim=-1)
    for _ in range(steps):
        coef = (
            coef
            * torch.bmm(x.transpose(1, 2), bases)
            / (coef.bmm(bases.transpose(1, 2).bmm(bases)) + 1e-6)
        )
        bases = bases * torch.bmm(x, coef) / (bases.bmm(coef.transpose(1, 2).bmm(coef)) + 1e-6)
    coef = (
        coef
        * torch.bmm(x.transpose(1, 2), bases)
        / (coef.bmm(bases.transpose(1, 2).bmm(bases)) + 1e-6)
    )
    return torch.bmm(bases, coef.transpose(1, 2)).view(b, c, h, w)


def _hamburger(x, sd, p, rank):
    enjoy = F.relu(_cm(x, sd, f"{p}ham_in", None, 1, act=False))
    enjoy = _cm(nmf(enjoy, rank, 7), sd, f"{p}ham_out", "gn", 1, act=False)
    return F.relu(x + enjoy)


def segmentor_forward(images, sd, size, head):
    """Eval-mode ``encode_decode``: logits at the input size."""
    strides = (4, 2, 1, 1) if head == "hamnet" else (4, 2, 2, 2)
    feats = backbone_forward(images, sd, size, strides)
    if head in ("light_ham", "light_ham_d256"):
        ins = feats[1:]
        x = torch.cat([_up(f, ins[0].shape[2:]) for f in ins], dim=1)
        x = _cm(x, sd, "decode_head.squeeze", "gn", 1)
        x = _hamburger(x, sd, "decode_head.hamburger.", 16 if head == "light_ham_d256" else 64)
        x = _cm(x, sd, "decode_head.align", "gn", 1)
    elif head == "hamnet":
        x0 = feats[3]
        x = _cm(x0, sd, "decode_head.squeeze", "gn", 3)
        x = _hamburger(x, sd, "decode_head.", 64)
        x = _cm(x, sd, "decode_head.align", "gn", 3)
        x = _cm(torch.cat([x0, x], dim=1), sd, "decode_head.conv_cat", "gn", 3)
    elif head == "upernet":
        top = feats[3]
        pooled = [
            _up(
                _cm(F.adaptive_avg_pool2d(top, s), sd, f"decode_head.psp_modules.{i}.1", "bn", 1),
                top.shape[2:],
            )
            for i, s in enumerate((1, 2, 3, 6))
        ]
        lats = [_cm(feats[i], sd, f"decode_head.lateral_convs.{i}", "bn", 1) for i in range(3)]
        lats.append(_cm(torch.cat([top, *pooled], 1), sd, "decode_head.bottleneck", "bn", 3))
        for i in (3, 2, 1):
            lats[i - 1] = lats[i - 1] + _up(lats[i], lats[i - 1].shape[2:])
        outs = [_cm(lats[i], sd, f"decode_head.fpn_convs.{i}", "bn", 3) for i in range(3)]
        outs.append(lats[3])
        outs = [outs[0]] + [_up(o, outs[0].shape[2:]) for o in outs[1:]]
        x = _cm(torch.cat(outs, 1), sd, "decode_head.fpn_bottleneck", "bn", 3)
    elif head == "fpn":
        lats = [_cm(feats[i], sd, f"neck.lateral_convs.{i}", None, 1, act=False) for i in range(4)]
        for i in (3, 2, 1):
            lats[i - 1] = lats[i - 1] + _up(lats[i], lats[i - 1].shape[2:], "nearest")
        outs = [_cm(lats[i], sd, f"neck.fpn_convs.{i}", None, 3, act=False) for i in range(4)]
        x = None
        for lvl in range(4):
            y = outs[lvl]
            for j in range(max(1, lvl)):
                y = _cm(y, sd, f"decode_head.scale_heads.{lvl}.{2 * j if lvl else 0}", "bn", 3)
                if lvl:
                    y = _up(y, [int(2 * s) for s in y.shape[2:]])
            x = y if x is None else x + _up(y, x.shape[2:])
    x = F.conv2d(x, sd["decode_head.conv_seg.weight"], sd["decode_head.conv_seg.bias"])
    return _up(x, images.shape[2:])
