"""The ``layers`` section of ``bench_speed.py``: VGG19's 3x3 convolutions, direct (oneDNN)
against Winograd (NNPACK), layer by layer (what :data:`explorer.nets.winograd.MIN_POSITIONS`
rests on). Run through ``bench_speed.py --only layers``.
"""

from __future__ import annotations

import harness
import torch
import torch.nn.functional as F

from explorer.nets import winograd
from explorer.style.gatys import prepare_images

picture = harness.shared_picture


def bench_layers(net, size: int, out: dict) -> None:
    """Each of VGG19's 3x3 convolutions (once per shape, up to conv5_1) at ``size`` px of the
    tubingen picture: median ms of the forward pass and of the input gradient, oneDNN NCHW,
    oneDNN channels_last and NNPACK's Winograd; prints a line per layer and appends to
    ``out["layers"]``."""
    c, _ = prepare_images(picture("tubingen"), picture("shipwreck"), size)
    h0, w0 = c.shape[-2:]

    def med(fn, n=5):
        return harness.median_time(fn, n=n, warmup=1)[0] * 1e3

    seen = set()
    print(f"  {size} px ({w0}x{h0}), ms: forward / input gradient")
    for name in net.layer_names:
        conv = net.body[name]
        if not isinstance(conv, torch.nn.Conv2d) or name == "conv5_2":
            if name == "conv5_2":
                break
            continue
        stride = 2 ** int(name[4]) // 2
        h, w = h0 // stride, w0 // stride
        key = (conv.in_channels, conv.out_channels, h, w)
        if key in seen:
            continue
        seen.add(key)
        x = torch.randn(1, conv.in_channels, h, w)
        g = torch.randn(1, conv.out_channels, h, w)
        xc, gc = x.contiguous(memory_format=torch.channels_last), g.contiguous(memory_format=torch.channels_last)
        wf = winograd.flipped_weight(conv.weight)
        bwd = lambda gg, xx: torch.ops.aten.convolution_backward(gg, xx, conv.weight, None, [1, 1], [1, 1], [1, 1],
                                                                 False, [0, 0], 1, [True, False, False])
        r = {"direct nchw": (med(lambda: F.conv2d(x, conv.weight, conv.bias, padding=1)), med(lambda: bwd(g, x))),
             "direct cl": (med(lambda: F.conv2d(xc, conv.weight, conv.bias, padding=1)), med(lambda: bwd(gc, xc))),
             "winograd": (med(lambda: winograd.winograd_conv3x3(x, conv.weight, conv.bias, wf)),
                          med(lambda: torch._nnpack_spatial_convolution(g, wf, None, [1, 1], [1, 1])))}
        auto = "winograd" if winograd.prefers(conv, x) else "direct"
        print(f"  {name} ({conv.in_channels}->{conv.out_channels}, {w}x{h} = {w * h} positions, auto: {auto}): " +
              ", ".join(f"{k} {f:.1f} / {b:.1f}" for k, (f, b) in r.items()))
        out.setdefault("layers", []).append({"size": size, "layer": name, "positions": w * h, "auto": auto,
                                             **{k: list(v) for k, v in r.items()}})
