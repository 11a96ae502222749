"""Benchmark: the project's Gatys style transfer against a plain reference loop.

Prints figures; asserts nothing about time. One run measures, per image size, on the same
images (scikit-image's "astronaut" as content, "gravel" as style) and the same weights file:

* ``reference``: the loop of the common PyTorch neural-style tutorial, written out below:
  torchvision VGG19 ``features`` rebuilt as an ``nn.Sequential`` (Normalization module first,
  in-place ReLUs replaced, loss modules inserted after relu4_2 (content) and relu1_1..relu5_1
  (style), truncated after the last loss module), fp32, contiguous memory,
  ``torch.optim.LBFGS([img])`` with its defaults (max_iter=20) and a closure that clamps the
  image to [0, 1] and counts evaluations, run until N closure evaluations. Its losses are the
  project's (``explorer.optim.losses.content_loss`` / ``style_layer_loss`` / ``gram_matrix``) with
  content weight 1 and the style weight and layer weights of ``StyleSettings()``, so alpha and
  beta mean the same thing in both.
* ``project``: ``explorer.style.transfer.StyleTransfer`` with ``StyleSettings(size=S, steps=N,
  optimizer="lbfgs", precision="fp32" | "bf16")``, channels_last "auto" (and "off" for fp32
  with ``--cl-off``).
* ``bare``: VGG19 ``features`` up to relu5_1 alone, forward + backward to an input that
  requires grad (weights frozen), fp32 and bf16 autocast, contiguous and channels_last input,
  averaged over a few iterations after a warm-up: the floor a style step is compared with.

Every configuration runs in a fresh child process (this script re-invoked with a hidden
``--one CONFIG`` flag), so each one's peak RSS is its own. The final image of every run is
then scored in another child by one function: eq. (7) evaluated in fp32 with the project's
fp32 loss code (``StyleTransfer(...).losses``, precision fp32, channels_last off).

Usage (from the repository root)::

    /work/venv/bin/python bench/bench_style.py                      # sizes 256,512, 100 steps
    /work/venv/bin/python bench/bench_style.py --sizes 64 --steps 5  # smoke test, < 1 minute
    /work/venv/bin/python bench/bench_style.py --sizes 256 --json bench/out/style-256.json

See bench/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "bench" / "out"
DEFAULT_WEIGHTS = OUT_DIR / "vgg19-untrained.pth"
RESULT_TAG = "BENCH_RESULT "
CONTENT_SAMPLE = "astronaut"
STYLE_SAMPLE = "gravel"
# torchvision vgg19().features indices: 28 = conv5_1, 29 = its ReLU (relu5_1)
RELU5_1_INDEX = 29


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ============================================================================ child side
# Everything below up to "parent side" runs inside a child process (--one CONFIG).

def _import_torch():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import torch

    return torch


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kb / 1024.0, 1)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux >= 4.0), so the peak of
    the optimization alone can be read afterwards. False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class _Memory:
    """Peak-RSS bookkeeping of one child: the setup peak (loading weights, building the
    model), the resident set when the timed loop starts, and the peak during the loop."""

    def __init__(self) -> None:
        self.setup_peak_mb = None
        self.before_run_mb = None
        self.run_peak_mb = None
        self.reset_ok = False

    def start(self) -> None:
        import gc

        gc.collect()
        self.setup_peak_mb = _maxrss_mb()
        rss = _proc_status_kb("VmRSS")
        self.before_run_mb = round(rss / 1024.0, 1) if rss is not None else None
        self.reset_ok = _reset_peak_rss()

    def stop(self) -> dict:
        if self.reset_ok:
            hwm = _proc_status_kb("VmHWM")
            self.run_peak_mb = round(hwm / 1024.0, 1) if hwm is not None else None
        # clear_refs also lowers what ru_maxrss reports afterwards, hence the max
        peak = max(v for v in (_maxrss_mb(), self.setup_peak_mb) if v is not None)
        return {
            "process_peak_rss_mb": peak,  # whole child, loading the weights included
            "setup_peak_rss_mb": self.setup_peak_mb,
            "rss_before_run_mb": self.before_run_mb,
            "run_peak_rss_mb": self.run_peak_mb,  # peak during the timed loop (None if unknown)
        }


def _images(size: int):
    from explorer.io.samples import load_sample
    from explorer.style.gatys import prepare_images

    content = load_sample(CONTENT_SAMPLE).image
    style = load_sample(STYLE_SAMPLE).image
    return prepare_images(content, style, size)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def child_setup(cfg: dict) -> dict:
    """Create the untrained weights file unless one was given; report the environment."""
    torch = _import_torch()
    import torchvision

    path = Path(cfg["weights"])
    created = False
    if cfg["make_weights"] and not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        sd = torchvision.models.vgg19().state_dict()
        tmp = path.with_suffix(".part")
        torch.save(sd, tmp)
        os.replace(tmp, path)
        created = True
    if not path.is_file():
        raise SystemExit(f"weights file not found: {path}")
    flags = _cpu_flags()
    try:
        mkldnn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older/newer torch without this private op
        mkldnn_bf16 = None
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "cpu_bf16_flags": sorted(f for f in flags if "bf16" in f or f.startswith("amx")),
        "mkldnn_bf16_supported": mkldnn_bf16,
        "weights_file": str(path),
        "weights_sha256": _sha256(path),
        "weights_bytes": path.stat().st_size,
        "weights_created": created,
        "weights_kind": cfg["weights_kind"],
        "loadavg_at_start": _loadavg(),
    }


# ---------------------------------------------------------------------------- bare network

def child_bare(cfg: dict) -> dict:
    """Forward + backward of VGG19 features[:relu5_1] on an S x S input (requires_grad),
    frozen weights; fp32 and bf16 autocast; contiguous and channels_last input."""
    torch = _import_torch()
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

            for _ in range(warmup):
                once()
            times = []
            c0 = time.process_time()
            for _ in range(iters):
                t0 = time.perf_counter()
                once()
                times.append(time.perf_counter() - t0)
            out[f"{prec}_{fmt}"] = {"mean_s": sum(times) / len(times), "min_s": min(times),
                                    "median_s": sorted(times)[len(times) // 2], "iters": iters,
                                    "cpu_s": (time.process_time() - c0) / iters}
            log(f"  bare {size}px {prec:4s} {fmt:13s} {out[f'{prec}_{fmt}']['mean_s']:.4f} s")
    return {"bare": out}


# ---------------------------------------------------------------------------- reference loop

def _plain_losses(torch):
    """The project's eq. (3), (4), (1) written the tutorial's way (view + mm), in this file, so
    that the reference does not speed up when explorer.style.transfer's functions do (--ref-losses plain).
    Same definitions: content 1/2 sum (F - P)^2; style 1/(4 N^2) sum (G/M - A)^2."""

    def gram_matrix(x, normalize=True):
        a, b, c, d = x.size()
        f = x.view(a * b, c * d)
        g = torch.mm(f, f.t())
        return (g / (c * d) if normalize else g).unsqueeze(0)

    def content_loss(x, target):
        return 0.5 * (x - target).pow(2).sum().view(1)

    def style_layer_loss(x, target_gram):
        g = gram_matrix(x)[0]
        n = g.shape[-1]
        return ((g - target_gram).pow(2).sum() / (4.0 * n * n)).view(1)

    return content_loss, gram_matrix, style_layer_loss


def _build_reference(torch, cnn, content, style, content_layer, style_layers, plain=False):
    """The tutorial's get_style_model_and_losses, with the project's layer names and losses.

    Returns (model, content_modules, style_modules). The targets are captured with one
    no-grad pass per image instead of the tutorial's one pass per loss layer (same values).
    """
    from torch import nn

    if plain:
        content_loss, gram_matrix, style_layer_loss = _plain_losses(torch)
    else:
        from explorer.optim.losses import content_loss, gram_matrix, style_layer_loss

    class Normalization(nn.Module):
        def __init__(self, mean, std):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

        def forward(self, img):
            return (img - self.mean) / self.std

    class ContentLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.target = None
            self.capture = False
            self.loss = None

        def forward(self, x):
            if self.capture:
                self.target = x.detach().clone()
            elif self.target is not None:
                self.loss = content_loss(x, self.target).sum()
            return x

    class StyleLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.target = None
            self.capture = False
            self.loss = None

        def forward(self, x):
            if self.capture:
                self.target = gram_matrix(x.detach(), normalize=True)[0].clone()
            elif self.target is not None:
                self.loss = style_layer_loss(x, self.target).sum()
            return x

    model = nn.Sequential(Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    content_mods, style_mods = [], {}
    block, idx = 1, 0
    for layer in cnn.children():
        if isinstance(layer, nn.Conv2d):
            idx += 1
            name = f"conv{block}_{idx}"
        elif isinstance(layer, nn.ReLU):
            name = f"relu{block}_{idx}"
            layer = nn.ReLU(inplace=False)  # in-place ReLU would overwrite what the losses saw
        elif isinstance(layer, nn.MaxPool2d):
            name = f"pool{block}"
            block, idx = block + 1, 0
        else:
            raise RuntimeError(f"unexpected layer {layer}")
        model.add_module(name, layer)
        if name == content_layer:
            m = ContentLoss()
            model.add_module(f"content_loss_{name}", m)
            content_mods.append(m)
        if name in style_layers:
            m = StyleLoss()
            model.add_module(f"style_loss_{name}", m)
            style_mods[name] = m
    # trim off the layers after the last loss module
    last = max(i for i, m in enumerate(model) if isinstance(m, (ContentLoss, StyleLoss)))
    model = model[: last + 1]
    model.eval()
    model.requires_grad_(False)
    with torch.no_grad():
        for m in content_mods:
            m.capture = True
        model(content)
        for m in content_mods:
            m.capture = False
        for m in style_mods.values():
            m.capture = True
        model(style)
        for m in style_mods.values():
            m.capture = False
    return model, content_mods, style_mods


def child_ref(cfg: dict) -> dict:
    torch = _import_torch()
    import torchvision

    from explorer.style.settings import StyleSettings

    size, steps = cfg["size"], cfg["steps"]
    settings = StyleSettings(size=size, steps=steps)
    content_weight = 1.0
    style_weight = settings.style_weight
    layer_w = settings.layer_weights
    content, style = _images(size)
    t_setup = time.perf_counter()
    cnn = torchvision.models.vgg19()
    cnn.load_state_dict(torch.load(cfg["weights"], map_location="cpu", weights_only=True))
    cnn = cnn.features.eval()
    model, content_mods, style_mods = _build_reference(
        torch, cnn, content.contiguous(), style.contiguous(), settings.content_layer, settings.style_layers,
        plain=cfg.get("ref_losses") == "plain")
    del cnn
    input_img = content.clone().contiguous()
    input_img.requires_grad_(True)
    optimizer = torch.optim.LBFGS([input_img])  # defaults: lr=1, max_iter=20, history_size=100
    setup_s = time.perf_counter() - t_setup

    mem = _Memory()
    mem.start()
    run = [0]
    history = []
    c0 = time.process_time()
    t0 = time.perf_counter()

    def closure():
        with torch.no_grad():
            input_img.clamp_(0, 1)
        optimizer.zero_grad()
        model(input_img)
        content_score = sum(m.loss for m in content_mods)
        style_score = sum(layer_w[n] * m.loss for n, m in style_mods.items())
        loss = content_weight * content_score + style_weight * style_score
        loss.backward()
        run[0] += 1
        history.append({"step": run[0], "total": float(loss.detach()),
                        "seconds": round(time.perf_counter() - t0, 4)})
        return loss

    while run[0] < steps:
        # the tutorial loops `while run[0] <= num_steps`, overshooting by up to max_iter
        # evaluations; cap the last call so that exactly `steps` evaluations run
        optimizer.param_groups[0]["max_iter"] = min(20, steps - run[0])
        optimizer.step(closure)
    with torch.no_grad():
        input_img.clamp_(0, 1)
    seconds = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    memory = mem.stop()
    torch.save(input_img.detach().clone(), cfg["save"])
    return {"seconds": seconds, "cpu_s": cpu_s, "evals": run[0], "setup_s": setup_s, "history": history,
            "channels_last": False, "precision": "fp32", "style_weight": style_weight,
            "ref_losses": cfg.get("ref_losses", "project"),
            "content_hw": "x".join(map(str, content.shape[-1:-3:-1])),
            "style_hw": "x".join(map(str, style.shape[-1:-3:-1])), **memory}


# ---------------------------------------------------------------------------- project

def child_proj(cfg: dict) -> dict:
    torch = _import_torch()
    from explorer.nets.models import load_model
    from explorer.style.transfer import StyleTransfer
    from explorer.style.settings import StyleSettings

    size, steps = cfg["size"], cfg["steps"]
    content, style = _images(size)
    t_setup = time.perf_counter()
    model = load_model("vgg19", weights=cfg["weights"], device="cpu")
    settings = StyleSettings(size=size, steps=steps, optimizer="lbfgs", precision=cfg["precision"],
                             channels_last=cfg["channels_last"])
    run = StyleTransfer(model, content, style, settings)
    setup_s = time.perf_counter() - t_setup
    mem = _Memory()
    mem.start()
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in run:
        pass
    wall = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    memory = mem.stop()
    res = run.result()
    torch.save(res.image, cfg["save"])
    history = [{"step": h["step"], "total": h["total"], "seconds": h["seconds"]} for h in res.history]
    return {"seconds": res.seconds, "wall_s": wall, "cpu_s": cpu_s, "evals": len(res.history), "setup_s": setup_s,
            "history": history, "stopped": res.stopped, "precision": res.precision,
            "channels_last": res.channels_last, "weights_label": res.weights_label, **memory}


# ---------------------------------------------------------------------------- scoring

def child_score(cfg: dict) -> dict:
    """Score every final image with eq. (7) in fp32, using the project's fp32 loss code."""
    torch = _import_torch()
    from explorer.nets.models import load_model
    from explorer.style.transfer import StyleTransfer
    from explorer.style.settings import StyleSettings

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
    cfg = json.loads(cfg_json)
    if cfg.get("threads"):
        torch = _import_torch()
        torch.set_num_threads(int(cfg["threads"]))
    result = CHILDREN[cfg["kind"]](cfg)
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


# ============================================================================ parent side

def _system_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine so far (all CPUs, from /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            f = fh.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    vals = [int(v) for v in f[1:]]
    busy = vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + (vals[7] if len(vals) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


BUSY_LIMIT = 0.25  # CPUs used by other processes above which a row is marked unreliable


def _other_cpus_now(interval: float = 2.0) -> float | None:
    """CPUs busy over the next `interval` seconds (this parent is idle meanwhile)."""
    b0 = _system_busy_s()
    time.sleep(interval)
    b1 = _system_busy_s()
    return None if b0 is None or b1 is None else (b1 - b0) / interval


def wait_quiet(max_wait: float) -> None:
    """Wait (at most max_wait seconds) until other processes have used under BUSY_LIMIT CPUs
    for three 2-second samples in a row."""
    if max_wait <= 0:
        return
    t0, calm = time.perf_counter(), 0
    while time.perf_counter() - t0 < max_wait:
        load = _other_cpus_now()
        if load is None:
            return
        calm = calm + 1 if load < BUSY_LIMIT else 0
        if calm >= 3:
            return
    log(f"  machine still busy after waiting {max_wait:.0f} s; going on")


def spawn(cfg: dict, threads: int | None) -> dict:
    """Run one configuration in a fresh interpreter; return its result dict (or an error)."""
    if threads:
        cfg = {**cfg, "threads": threads}
    t0 = time.perf_counter()
    busy0, ours0 = _system_busy_s(), _children_cpu_s()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(cfg)],
                          stdout=subprocess.PIPE, stderr=None, text=True, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    busy1, ours1 = _system_busy_s(), _children_cpu_s()
    other = None
    if busy0 is not None and busy1 is not None and wall > 0:
        other = round(max(0.0, (busy1 - busy0) - (ours1 - ours0)) / wall, 2)
    log(f"  ({cfg['kind']} child: {wall:.1f} s; other processes used {other} CPUs meanwhile)")
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            out = json.loads(line[len(RESULT_TAG):])
            out["other_cpu_load"] = other
            return out
    tail = proc.stdout.strip().splitlines()[-3:]
    return {"error": f"child {cfg['kind']} exited with {proc.returncode}: {' | '.join(tail)}"}


def first_reaching(history: list[dict], target: float, final: dict | None = None) -> dict | None:
    """First history entry whose total loss is <= target. A step's recorded loss is that of the
    image before the step's update, so the final image's (scored) loss is appended as one more
    point at the run's total time (``step`` "end") when given."""
    points = list(history) + ([final] if final is not None and final.get("total") is not None else [])
    for h in points:
        if h["total"] <= target:
            return h
    return None


def _final_point(r: dict) -> dict:
    return {"step": "end", "total": r.get("final_loss_fp32"), "seconds": r["seconds"]}


def derive(res: dict) -> dict:
    """Per-step times, ratios to the bare network and times to equal loss, from one size's raw
    results (also usable on a --json file's entries)."""
    bare = res["bare"] or {}
    ref = res["runs"].get("reference", {})
    for key in ("content_hw", "style_hw", "style_weight"):
        res[key] = ref.get(key, "?")
    ref_score = res["scores"].get("reference", {}).get("total")
    ref_time = ref.get("seconds")
    for name, r in res["runs"].items():
        if "error" not in r:
            r["final_loss_fp32"] = res["scores"].get(name, {}).get("total")
    for name, r in res["runs"].items():
        if "error" in r:
            continue
        r["s_per_step"] = r["seconds"] / max(1, r["evals"])
        r["cpu_s_per_step"] = r["cpu_s"] / max(1, r["evals"])
        fmt = "channels_last" if r["channels_last"] else "contiguous"
        b = bare.get(f"{r['precision']}_{fmt}")
        r["bare_s"] = b["mean_s"] if b else None
        r["step_vs_bare"] = r["s_per_step"] / b["mean_s"] if b else None
        best = [v["mean_s"] for k, v in bare.items() if k.startswith(r["precision"])]
        r["step_vs_best_bare"] = r["s_per_step"] / min(best) if best else None
        if name == "reference" or "error" in ref:
            continue
        if ref_score is not None:
            # when does this run first reach the loss the reference ends with?
            hit = first_reaching(r["history"], ref_score, _final_point(r))
            r["reached_reference_loss"] = hit is not None
            r["time_to_reference_loss_s"] = hit["seconds"] if hit else None
            r["step_reaching_reference_loss"] = hit["step"] if hit else None
            r["speedup_to_reference_loss"] = (ref_time / hit["seconds"]) if hit and hit["seconds"] > 0 else None
        if r["final_loss_fp32"] is not None:
            # the other way round: when did the reference reach the loss this run ends with?
            hit = first_reaching(ref["history"], r["final_loss_fp32"], _final_point(ref))
            r["reference_time_to_this_loss_s"] = hit["seconds"] if hit else None
            r["reference_step_to_this_loss"] = hit["step"] if hit else None
            r["speedup_at_this_loss"] = hit["seconds"] / r["seconds"] if hit and r["seconds"] > 0 else None
    return res


def spawn_measured(cfg: dict, args) -> dict:
    """spawn(), after waiting for a quiet machine (--wait-quiet), again up to --retries times
    while other processes used more than BUSY_LIMIT CPUs during the run. The last attempt is
    kept (its final image is the one on disk)."""
    r: dict = {}
    for attempt in range(1 + max(0, args.retries)):
        wait_quiet(args.wait_quiet)
        r = spawn(cfg, args.threads)
        r["attempts"] = attempt + 1
        other = r.get("other_cpu_load")
        if "error" in r or other is None or other <= BUSY_LIMIT:
            break
        if attempt < args.retries:
            log(f"  other processes used {other} CPUs during this run; running it again")
    return r


def bench_size(size: int, args, weights: str) -> dict:
    steps = args.steps
    tag = f"{size}px-{steps}steps"
    res: dict = {"size": size, "steps": steps}
    log(f"[{size}px] bare network forward+backward")
    bare = spawn_measured({"kind": "bare", "size": size, "weights": weights, "iters": args.bare_iters,
                           "warmup": args.bare_warmup}, args)
    res["bare"] = bare.get("bare")
    res["bare_meta"] = {k: v for k, v in bare.items() if k != "bare"}
    runs = {"reference": {"kind": "ref", "ref_losses": args.ref_losses},
            "project_fp32": {"kind": "proj", "precision": "fp32", "channels_last": "auto"},
            "project_bf16": {"kind": "proj", "precision": "bf16", "channels_last": "auto"}}
    if args.cl_off:
        runs["project_fp32_cl_off"] = {"kind": "proj", "precision": "fp32", "channels_last": "off"}
    images = {}
    res["runs"] = {}
    for name, cfg in runs.items():
        log(f"[{size}px] {name}: {steps} steps")
        save = str(OUT_DIR / f"final-{name}-{tag}.pt")
        r = spawn_measured({**cfg, "size": size, "steps": steps, "weights": weights, "save": save}, args)
        res["runs"][name] = r
        if "error" not in r:
            images[name] = save
            log(f"[{size}px] {name}: {r['seconds']:.2f} s, {r['evals']} evaluations")
        else:
            log(f"[{size}px] {name}: {r['error']}")
    log(f"[{size}px] scoring final images (fp32, project loss code)")
    scores = spawn({"kind": "score", "size": size, "weights": weights, "images": images}, args.threads)
    res["scores"] = scores.get("scores", {})
    if "error" in scores:
        res["score_error"] = scores["error"]

    derive(res)
    return res


def _other_loads(s: dict) -> list[float]:
    """CPUs used by other processes while each child of a size ran (from /proc/stat minus
    our children's CPU time). Anything well above 0 makes the OpenMP-threaded convolutions
    slow down erratically (threads wait for a descheduled peer at every barrier)."""
    vals = [r.get("other_cpu_load") for r in s["runs"].values()]
    vals.append((s.get("bare_meta") or {}).get("other_cpu_load"))
    return [v for v in vals if v is not None]


def _f(v, fmt: str, none: str = "-") -> str:
    return none if v is None else format(v, fmt)


def print_report(env: dict, sizes: list[dict], args) -> None:
    w = env
    print()
    print(f"weights: {w['weights_file']} ({w['weights_kind']}; sha256 {w['weights_sha256'][:16]}..., "
          f"{w['weights_bytes'] / 1e6:.0f} MB){' [created now]' if w['weights_created'] else ''}")
    print(f"torch {w['torch']} / torchvision {w['torchvision']} / python {w['python']}; "
          f"{w['threads']} threads ({w['cpu_count']} CPUs); CPU: {w['cpu_model']}; "
          f"bf16: cpu flags {','.join(w['cpu_bf16_flags']) or 'none'}, "
          f"oneDNN bf16 {'yes' if w['mkldnn_bf16_supported'] else 'no'}; load average at start "
          f"{w.get('loadavg_at_start')}")
    print(f"images: content sample:{CONTENT_SAMPLE}, style sample:{STYLE_SAMPLE}; "
          f"L-BFGS lr 1, content weight 1, style weight {sizes[0]['style_weight']}; reference losses: "
          f"{'in-file (tutorial style)' if args.ref_losses == 'plain' else 'imported from explorer.style.transfer'}")
    for s in sizes:
        print()
        print(f"== {s['size']} px ({s['steps']} steps; content {s['content_hw']}, style {s['style_hw']}) ==")
        b = s["bare"] or {}
        if b:
            print("bare VGG19 features..relu5_1 fwd+bwd, s/iter: " + ", ".join(
                f"{k.replace('_contiguous', '').replace('_channels_last', ' cl')} {v['mean_s']:.4f}"
                for k, v in b.items())
                + f"  (other CPUs {(s.get('bare_meta') or {}).get('other_cpu_load')})")
        loads = _other_loads(s)
        if loads:
            print(f"other processes' CPU use during the runs (CPUs busy besides this benchmark): "
                  f"max {max(loads):.2f}" + ("  <- machine busy: timings unreliable, rerun when quiet"
                                               if max(loads) > BUSY_LIMIT else ""))
        ref_total = s["scores"].get("reference", {}).get("total")
        start = s["scores"].get("(content image)", {}).get("total")
        print(f"loss of the content image (start): {_f(start, '.5g')}; reference final: {_f(ref_total, '.5g')}")
        hdr = (f"{'config':<22}{'s/step':>8}{'evals':>7}{'total s':>9}{'final loss':>13}{'vs bare':>9}"
               f"{'to ref loss':>14}{'speedup':>9}{'ref to this':>14}{'speedup':>9}{'peak MB':>9}{'run MB':>8}{'+run MB':>8}{'other':>6}")
        print(hdr)
        print("-" * len(hdr))
        for name, r in s["runs"].items():
            if "error" in r:
                print(f"{name:<22}ERROR {r['error']}")
                continue
            label = f"{name.replace('project_', 'proj ').replace('_cl_off', '')} " \
                    f"{'cl' if r['channels_last'] else 'nchw'}" if name != "reference" else "reference fp32 nchw"
            if name == "reference" or r.get("reference_time_to_this_loss_s") is None:
                back, bspeed = ("-", "-") if name == "reference" else ("not reached", "-")
            else:
                back = f"{r['reference_time_to_this_loss_s']:.2f}s@{r['reference_step_to_this_loss']}"
                bspeed = f"{r['speedup_at_this_loss']:.2f}x"
            if name == "reference":
                reach, speed = "(itself)", "1.00x"
            elif r.get("reached_reference_loss"):
                reach = f"{r['time_to_reference_loss_s']:.2f}s@{r['step_reaching_reference_loss']}"
                speed = f"{r['speedup_to_reference_loss']:.2f}x"
            else:
                reach, speed = "not reached", "-"
            run_mb = r.get("run_peak_rss_mb")
            before = r.get("rss_before_run_mb")
            delta = run_mb - before if run_mb is not None and before is not None else None
            print(f"{label:<22}{r['s_per_step']:>8.4f}{r['evals']:>7d}{r['seconds']:>9.2f}"
                  f"{_f(r.get('final_loss_fp32'), '.5g'):>13}{_f(r.get('step_vs_bare'), '.2f'):>8}x"
                  f"{reach:>14}{speed:>9}{back:>14}{bspeed:>9}{_f(r.get('process_peak_rss_mb'), '.0f'):>9}{_f(run_mb, '.0f'):>8}"
                  f"{_f(delta, '.0f'):>8}{_f(r.get('other_cpu_load'), '.2f'):>6}")
        if "score_error" in s:
            print(f"scoring failed: {s['score_error']}")


def summary(env: dict, sizes: list[dict]) -> dict:
    """Figures without the per-step histories (the JSON line)."""
    out = {"env": env, "sizes": []}
    for s in sizes:
        d = {k: v for k, v in s.items() if k != "runs"}
        d["runs"] = {n: {k: v for k, v in r.items() if k != "history"} for n, r in s["runs"].items()}
        out["sizes"].append(d)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256,512", help="comma-separated working sizes in px (default 256,512)")
    p.add_argument("--steps", type=int, default=100, help="closure evaluations / steps per run (default 100)")
    p.add_argument("--weights", default=None,
                   help="a VGG19 state_dict file used by every configuration (default: create "
                        f"{DEFAULT_WEIGHTS.relative_to(ROOT)} with untrained seeded weights)")
    p.add_argument("--ref-losses", choices=("project", "plain"), default="project",
                   help="losses of the reference loop: import explorer.style.transfer's (default) or the same "
                        "definitions written in this file the tutorial's way (unaffected by changes to "
                        "explorer.style.transfer)")
    p.add_argument("--cl-off", action="store_true", help="also run the project fp32 with channels_last off")
    p.add_argument("--bare-iters", type=int, default=5, help="timed iterations of the bare network (default 5)")
    p.add_argument("--bare-warmup", type=int, default=2, help="warm-up iterations of the bare network (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in every child")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="before each timed configuration, wait up to this long for other processes to "
                        f"use under {BUSY_LIMIT} CPUs (default 0: do not wait)")
    p.add_argument("--retries", type=int, default=0,
                   help="run a timed configuration again (up to this many times) when other processes "
                        f"used more than {BUSY_LIMIT} CPUs while it ran (default 0)")
    p.add_argument("--json", default=None, help="also write all figures, per-step histories included, here")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one is not None:
        return run_child_main(args.one)

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.steps < 1 or not sizes:
        p.error("need at least one size and --steps >= 1")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if args.weights:
        weights = str(Path(args.weights).expanduser().resolve())
        kind = "weights from file given with --weights"
    else:
        weights = str(DEFAULT_WEIGHTS)
        kind = "untrained: torchvision vgg19() default init under torch.manual_seed(0)"
    log("setup: weights and environment")
    env = spawn({"kind": "setup", "weights": weights, "make_weights": not args.weights, "weights_kind": kind},
                args.threads)
    if "error" in env:
        log(env["error"])
        return 1

    # the parent never imports torch (children report image sizes and settings), so nothing
    # of it can leak into the children's peak-RSS figures
    results = []
    t_all = time.perf_counter()
    for size in sizes:
        results.append(bench_size(size, args, weights))
    log(f"done in {time.perf_counter() - t_all:.0f} s")
    print_report(env, results, args)
    line = summary(env, results)
    print()
    print("JSON " + json.dumps(line, separators=(",", ":")))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"env": env, "sizes": results}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
