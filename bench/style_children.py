"""The child processes of ``bench_style.py``: each configuration runs in a fresh interpreter
(``bench_style.py --one CONFIG``), so its peak memory is its own. One function per kind:
``setup`` (weights file and machine), ``bare`` (the network alone), ``ref`` (the tutorial loop),
``proj`` (``StyleTransfer``) and ``score`` (every final image by one fp32 loss).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import harness
from harness import log

RESULT_TAG = "BENCH_RESULT "
CONTENT_SAMPLE = "astronaut"
STYLE_SAMPLE = "gravel"
# torchvision vgg19().features indices: 28 = conv5_1, 29 = its ReLU (relu5_1)
RELU5_1_INDEX = 29


def _images(size: int):
    from explorer.style.gatys import prepare_images

    return prepare_images(harness.sample(CONTENT_SAMPLE), harness.sample(STYLE_SAMPLE), size)


def child_setup(cfg: dict) -> dict:
    """Create the untrained weights file unless one was given; report the machine."""
    import torch
    import torchvision

    path, created = Path(cfg["weights"]), False
    if cfg["make_weights"]:
        path, created = harness.untrained_vgg19_file(path)
    if not path.is_file():
        raise SystemExit(f"weights file not found: {path}")
    try:
        mkldnn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older/newer torch without this private op
        mkldnn_bf16 = None
    return {**harness.machine(), "torchvision": torchvision.__version__,
            "cpu_bf16_flags": sorted(f for f in harness.cpu_flags() if "bf16" in f or f.startswith("amx")),
            "mkldnn_bf16_supported": mkldnn_bf16, "weights_file": str(path), "weights_sha256": harness.sha256(path),
            "weights_bytes": path.stat().st_size, "weights_created": created, "weights_kind": cfg["weights_kind"]}


def child_bare(cfg: dict) -> dict:
    """Forward + backward of VGG19 features[:relu5_1] on an S x S input (requires_grad),
    frozen weights; fp32 and bf16 autocast; contiguous and channels_last input."""
    import torch
    import torchvision

    size, iters, warmup = cfg["size"], cfg["iters"], cfg["warmup"]
    with torch.device("meta"):  # no random init of 140M parameters: the file's tensors are used
        net = torchvision.models.vgg19()
    net.load_state_dict(torch.load(cfg["weights"], map_location="cpu", weights_only=True), assign=True)
    feats = net.features[: RELU5_1_INDEX + 1].eval()
    feats.requires_grad_(False)
    del net
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = {}
    for prec in ("fp32", "bf16"):
        for fmt in ("contiguous", "channels_last"):
            def once():
                x.grad = None
                xin = x.contiguous(memory_format=torch.channels_last) if fmt == "channels_last" else x
                if prec == "bf16":
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        y = feats(xin)
                else:
                    y = feats(xin)
                y.float().sum().backward()

            c0 = harness.own_cpu_s()
            med, times = harness.median_time(once, n=iters, warmup=warmup)
            cpu_s = (harness.own_cpu_s() - c0) / (iters + warmup)
            out[f"{prec}_{fmt}"] = {"mean_s": sum(times) / len(times), "min_s": min(times), "median_s": med,
                                    "iters": iters, "cpu_s": cpu_s}
            log(f"  bare {size}px {prec:4s} {fmt:13s} {out[f'{prec}_{fmt}']['mean_s']:.4f} s")
    return {"bare": out}


def child_ref(cfg: dict) -> dict:
    """The tutorial loop (``harness.tutorial_reference``) on torchvision's VGG19 with the
    objective of ``StyleSettings()``: its content and style layers, w_l, alpha 1 and its beta."""
    import torch
    import torchvision

    from explorer.style.settings import StyleSettings

    size, steps = cfg["size"], cfg["steps"]
    settings = StyleSettings(size=size, steps=steps)
    content, style = _images(size)
    t_setup = time.perf_counter()
    cnn = torchvision.models.vgg19()  # the tutorial's way: a random init, then the state_dict
    cnn.load_state_dict(torch.load(cfg["weights"], map_location="cpu", weights_only=True))
    cnn = cnn.features.eval()
    cnn.requires_grad_(False)
    features = harness.torchvision_features(cnn, [settings.content_layer, *settings.style_layers])
    setup_s = time.perf_counter() - t_setup
    mem = harness.PeakRSS().start()
    ref = harness.tutorial_reference(
        features, content.contiguous(), style.contiguous(), content_layer=settings.content_layer,
        style_layers=settings.style_layers, layer_weights=settings.layer_weights, alpha=1.0,
        beta=settings.style_weight, evals=steps,
        losses=harness.plain_losses() if cfg.get("ref_losses") == "plain" else None)
    memory = mem.stop()
    torch.save(ref.image.clamp(0, 1).clone(), cfg["save"])  # the picture a user gets
    # times from the first evaluation's start, as the project's (targets are set-up for both)
    history = [{"step": k + 1, "total": v, "seconds": round(t - ref.targets_s, 4)}
               for k, (t, v) in enumerate(ref.curve)]
    return {"seconds": ref.seconds - ref.targets_s, "cpu_s": ref.cpu_s, "evals": len(ref.curve),
            "setup_s": setup_s + ref.targets_s, "history": history, "channels_last": False, "precision": "fp32",
            "style_weight": settings.style_weight, "ref_losses": cfg.get("ref_losses", "project"),
            "content_hw": "x".join(map(str, content.shape[-1:-3:-1])),
            "style_hw": "x".join(map(str, style.shape[-1:-3:-1])), **memory}


def child_proj(cfg: dict) -> dict:
    import torch

    from explorer.nets.models import load_model
    from explorer.style.settings import StyleSettings
    from explorer.style.transfer import StyleTransfer

    size, steps = cfg["size"], cfg["steps"]
    content, style = _images(size)
    t_setup = time.perf_counter()
    model = load_model("vgg19", weights=cfg["weights"], device="cpu")
    settings = StyleSettings(size=size, steps=steps, optimizer="lbfgs", precision=cfg["precision"],
                             channels_last=cfg["channels_last"])
    run = StyleTransfer(model, content, style, settings)
    setup_s = time.perf_counter() - t_setup
    mem = harness.PeakRSS().start()
    c0, t0 = harness.own_cpu_s(), time.perf_counter()
    for _ in run:
        pass
    wall, cpu_s = time.perf_counter() - t0, harness.own_cpu_s() - c0
    memory = mem.stop()
    res = run.result()
    torch.save(res.image, cfg["save"])
    history = [{"step": h["step"], "total": h["total"], "seconds": h["seconds"]} for h in res.history]
    return {"seconds": res.seconds, "wall_s": wall, "cpu_s": cpu_s, "evals": len(res.history), "setup_s": setup_s,
            "history": history, "stopped": res.stopped, "precision": res.precision,
            "channels_last": res.channels_last, "weights_label": res.weights_label, **memory}


def child_score(cfg: dict) -> dict:
    """Score every final image with eq. (7) in fp32, using the project's fp32 loss code."""
    import torch

    from explorer.nets.models import load_model
    from explorer.style.settings import StyleSettings
    from explorer.style.transfer import StyleTransfer

    size = cfg["size"]
    content, style = _images(size)
    model = load_model("vgg19", weights=cfg["weights"], device="cpu")
    scorer = StyleTransfer(model, content, style,
                           StyleSettings(size=size, steps=1, precision="fp32", channels_last="off"))
    out = {}
    with torch.no_grad():
        for name, path in cfg["images"].items():
            img = torch.load(path, map_location="cpu", weights_only=True).float()
            t = scorer.losses(img)
            out[name] = {k: float(t[k].sum()) for k in ("content", "style", "total")}
        t = scorer.losses(content)
        out["(content image)"] = {k: float(t[k].sum()) for k in ("content", "style", "total")}
    return {"scores": out}


CHILDREN = {"setup": child_setup, "bare": child_bare, "ref": child_ref, "proj": child_proj,
            "score": child_score}


def run_child_main(cfg_json: str) -> int:
    """Run one configuration (a JSON dict with ``kind``) and print its result after RESULT_TAG."""
    cfg = json.loads(cfg_json)
    if cfg.get("threads"):
        import torch

        torch.set_num_threads(int(cfg["threads"]))
    result = CHILDREN[cfg["kind"]](cfg)
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0
