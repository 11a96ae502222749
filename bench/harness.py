"""What every benchmark in bench/ shares: the machine line, timing, peak memory, the other
processes' CPU use, images and weights, and the one tutorial reference loop.

Imports nothing heavy at module level (torch and the project are imported inside the functions
that need them), so a parent process that only spawns children stays light and its own memory
never enters a child's figures.

* :func:`machine` / :func:`machine_line`: CPU model, AVX-512 yes/no, native bf16 yes/no,
  torch version, threads. Every printed table starts with this line.
* :func:`median_time`: median seconds of ``n`` calls after ``warmup`` calls.
* :class:`PeakRSS`: the one peak-memory method. It reads the kernel's resident-set high-water
  mark (``VmHWM`` in ``/proc/self/status``), which is exact, unlike a sampling thread, and can be
  reset (``/proc/self/clear_refs``, Linux >= 4.0) so that the peak of the measured part alone is
  known, unlike ``ru_maxrss``, which only ever grows. Run each configuration in a fresh child
  process so that no earlier configuration's memory counts.
* :class:`OtherCPU` / :func:`wait_quiet`: CPUs used by other processes meanwhile (``/proc/stat``).
* :func:`tutorial_reference`: the PyTorch neural-style tutorial's L-BFGS Gatys loop, the
  reference the project's speed is compared with (``bench_style.py``, ``bench_speed.py``).
"""

from __future__ import annotations

import gc
import hashlib
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "bench" / "out"
#: Real weights and pictures (never copied into the repository); ``EXPLORER_SHARED`` overrides.
SHARED = Path(os.environ.get("EXPLORER_SHARED", ROOT.parent / "shared"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    """Progress to stderr (the report goes to stdout)."""
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the machine

def _cpuinfo(key: str) -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    return set((_cpuinfo("flags") or "").split())


def machine(threads: int | None = None) -> dict:
    """What every figure must state: CPU model, AVX-512 (``avx512f``) yes/no, native bf16
    (``avx512_bf16`` or ``amx_bf16``) yes/no, torch version, torch's threads, CPUs, load average.

    Imports torch. ``threads`` overrides the reported thread count (e.g. a child's)."""
    import torch

    flags = cpu_flags()
    return {"cpu_model": _cpuinfo("model name") or platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "avx512": "avx512f" in flags,
            "native_bf16": bool({"avx512_bf16", "amx_bf16"} & flags), "amx": "amx_tile" in flags,
            "torch": torch.__version__, "threads": threads or torch.get_num_threads(),
            "python": platform.python_version(), "loadavg": loadavg()}


def machine_line(m: dict | None = None) -> str:
    """One line from :func:`machine`: ``CPU ...; AVX-512 yes; native bf16 no; torch 2.14.1; 2 threads``."""
    m = m or machine()
    yn = lambda v: "yes" if v else "no"  # noqa: E731
    return (f"CPU {m['cpu_model']} ({m['cpu_count']} CPUs); AVX-512 {yn(m['avx512'])}; native bf16 "
            f"{yn(m['native_bf16'])}{' (AMX)' if m.get('amx') else ''}; torch {m['torch']}; {m['threads']} threads; "
            f"load average {m['loadavg']}")


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, rounded to 0.01 (None where unknown)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------------------- timing

def median_time(fn: Callable[[], object], n: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall-clock seconds of ``n`` calls of ``fn`` after ``warmup`` untimed calls.

    Returns (median, every timed call's seconds). The median, not the mean, so that one call
    slowed by another process does not move the figure."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, n)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    s = sorted(times)
    mid = len(s) // 2
    return (s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2), times


# ---------------------------------------------------------------------------- peak memory

def proc_status_mb(key: str) -> float | None:
    """A ``/proc/self/status`` figure (``VmRSS``, ``VmHWM``) in MiB, or None where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def malloc_trim() -> None:
    """Give glibc's freed heap back to the kernel (no-op elsewhere), so a baseline is not inflated."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRSS:
    """Peak resident set size of this process, from the kernel's high-water mark.

    ``start()`` (just before the measured part): ``gc.collect``, ``malloc_trim``, records the
    process peak so far and the resident set as the baseline, then resets the high-water mark.
    ``stop()`` returns MiB figures: ``process_peak_rss_mb`` (the whole process, start-up and
    loading included), ``setup_peak_rss_mb`` (before ``start``), ``rss_before_run_mb`` (the
    baseline), ``run_peak_rss_mb`` (the peak of the measured part) and ``run_growth_mb``
    (run peak minus baseline: what the measured part needed). Without ``/proc/self/clear_refs``
    (not Linux, or no permission) the run figures are None and ``reset_ok`` is False.
    """

    def __init__(self) -> None:
        self.setup_peak_mb: float | None = None
        self.before_mb: float | None = None
        self.reset_ok = False

    def start(self) -> "PeakRSS":
        gc.collect()
        malloc_trim()
        self.setup_peak_mb = self.process_peak_mb()
        self.before_mb = proc_status_mb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
            self.reset_ok = True
        except OSError:
            self.reset_ok = False
        return self

    @staticmethod
    def process_peak_mb() -> float:
        """The high-water mark now (``VmHWM``; ``ru_maxrss`` where /proc is missing), in MiB."""
        hwm = proc_status_mb("VmHWM")
        return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def stop(self) -> dict:
        now = self.process_peak_mb()
        run = now if self.reset_ok else None
        r1 = lambda v: None if v is None else round(v, 1)  # noqa: E731
        return {"process_peak_rss_mb": r1(max(v for v in (now, self.setup_peak_mb) if v is not None)),
                "setup_peak_rss_mb": r1(self.setup_peak_mb), "rss_before_run_mb": r1(self.before_mb),
                "run_peak_rss_mb": r1(run),
                "run_growth_mb": r1(run - self.before_mb if run is not None and self.before_mb is not None else None)}


# ---------------------------------------------------------------------------- other processes

BUSY_LIMIT = 0.25  # CPUs used by other processes above which a row is marked unreliable


def system_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine so far (all CPUs, from ``/proc/stat``), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            f = fh.readline().split()
    except OSError:
        return None
    vals = [int(v) for v in f[1:]]  # user nice system idle iowait irq softirq steal ...
    busy = vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + (vals[7] if len(vals) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_s(children: bool = False) -> float:
    """CPU seconds (user + system) of this process, or of its finished children."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class OtherCPU:
    """CPUs used by other processes between ``start()`` and ``stop()``: the machine's busy CPU
    seconds minus this process's (``children=True``: minus its finished children's), over the wall
    clock. Anything well above 0 slows OpenMP-threaded convolutions erratically."""

    def __init__(self, children: bool = False) -> None:
        self.children = children

    def start(self) -> "OtherCPU":
        self.t0, self.b0, self.c0 = time.perf_counter(), system_busy_s(), own_cpu_s(self.children)
        return self

    def stop(self) -> float | None:
        wall, b1, c1 = time.perf_counter() - self.t0, system_busy_s(), own_cpu_s(self.children)
        if self.b0 is None or b1 is None or wall <= 0:
            return None
        return round(max(0.0, (b1 - self.b0) - (c1 - self.c0)) / wall, 2)


def wait_quiet(max_wait: float, interval: float = 2.0) -> None:
    """Wait (at most ``max_wait`` seconds) until the machine has used under :data:`BUSY_LIMIT`
    CPUs for three ``interval``-second samples in a row (this process idle meanwhile)."""
    if max_wait <= 0:
        return
    t0, calm = time.perf_counter(), 0
    while time.perf_counter() - t0 < max_wait:
        b0 = system_busy_s()
        time.sleep(interval)
        b1 = system_busy_s()
        if b0 is None or b1 is None:
            return
        calm = calm + 1 if (b1 - b0) / interval < BUSY_LIMIT else 0
        if calm >= 3:
            return
    log(f"  machine still busy after waiting {max_wait:.0f} s; going on")


# ---------------------------------------------------------------------------- images and weights

def sample(name: str):
    """A bundled scikit-image sample as an RGB PIL image (``astronaut``, ``gravel``, ...)."""
    from explorer.io.samples import load_sample

    return load_sample(name).image


def shared_picture(stem: str):
    """The first picture in ``SHARED/images`` whose file name starts with ``stem`` (RGB PIL image).

    Raises FileNotFoundError when the folder or such a picture is missing."""
    from explorer.io.images import load_image

    folder = SHARED / "images"
    found = sorted(p for p in folder.iterdir() if p.stem.startswith(stem)) if folder.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no picture {stem}* in {folder}")
    return load_image(str(found[0])).image


def shared_weights(name: str = "vgg19-caffe-features-q8.pth") -> Path | None:
    """``SHARED/weights/NAME`` when that real weights file is present, else None."""
    path = SHARED / "weights" / name
    return path if path.is_file() else None


def no_shared_weights(name: str = "vgg19-caffe-features-q8.pth") -> int:
    """Say on stderr that the real weights file is missing and where to point; the exit status 2."""
    print(f"error: {SHARED / 'weights' / name} not found (set EXPLORER_SHARED to the shared folder)", file=sys.stderr)
    return 2


def untrained_vgg19_file(path: Path = OUT_DIR / "vgg19-untrained.pth") -> tuple[Path, bool]:
    """A torchvision VGG19 state_dict with untrained weights (``torch.manual_seed(0)``, the same
    parameters as ``load_model("vgg19", weights="untrained")``), written once (atomically).

    Returns (path, created now)."""
    import torch
    import torchvision

    if path.is_file():
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tmp = path.with_suffix(".part")
    torch.save(torchvision.models.vgg19().state_dict(), tmp)
    os.replace(tmp, path)
    return path, True


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------- the tutorial loop

def plain_losses():
    """Gatys et al. 2016 eq. (1) content loss, eq. (3) Gram matrix, eq. (4) layer style loss and
    eq. (5) weighted sum, written here the tutorial's way (``view`` + ``mm``), so that a reference
    built on them does not get faster when ``explorer.optim.losses`` does. Same definitions and
    call signatures as ``explorer.optim.losses``: content 1/2 sum (F - P)^2 per image, shape (1,);
    style 1/(4 N^2) sum (G/M - A)^2 with G/M the position-normalized Gram matrix."""
    import torch

    def gram_matrix(x, normalize=False):
        a, b, c, d = x.size()
        f = x.view(a * b, c * d)
        g = torch.mm(f, f.t())
        return (g / (c * d) if normalize else g).unsqueeze(0)

    def content_loss(x, target):
        return 0.5 * (x - target).pow(2).sum().view(1)

    def style_layer_loss(x, target_gram):
        g = gram_matrix(x, normalize=True)[0]
        n = g.shape[-1]
        return ((g - target_gram).pow(2).sum() / (4.0 * n * n)).view(1)

    def style_loss(layer_losses, layer_weights):
        return sum(layer_weights[name] * value for name, value in layer_losses.items())

    return SimpleNamespace(content_loss=content_loss, gram_matrix=gram_matrix,
                           style_layer_loss=style_layer_loss, style_loss=style_loss)


def torchvision_features(cnn_features, layers) -> Callable:
    """The tutorial's network: torchvision VGG19 ``features`` behind an ImageNet normalization,
    in-place ReLUs replaced by out-of-place ones (an in-place ReLU would overwrite what a loss
    saw), cut after the deepest of ``layers``. Returns ``f(x) -> {layer name: activations}`` for
    images x (1, 3, H, W) in [0, 1]; layer names as the project's (``conv1_1``, ``relu4_2``, ``pool1``)."""
    import torch
    from torch import nn

    named, block, idx = [], 1, 0
    for layer in cnn_features.children():
        if isinstance(layer, nn.Conv2d):
            idx += 1
            name = f"conv{block}_{idx}"
        elif isinstance(layer, nn.ReLU):
            name, layer = f"relu{block}_{idx}", nn.ReLU(inplace=False)
        elif isinstance(layer, nn.MaxPool2d):
            name, block, idx = f"pool{block}", block + 1, 0
        else:
            raise RuntimeError(f"unexpected layer {layer}")
        named.append((name, layer))
    wanted = set(layers)
    last = max(i for i, (n, _) in enumerate(named) if n in wanted)
    named = named[: last + 1]
    mean = torch.tensor((0.485, 0.456, 0.406)).view(-1, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(-1, 1, 1)

    def features(x):
        out, h = {}, (x - mean) / std
        for name, layer in named:
            h = layer(h)
            if name in wanted:
                out[name] = h
        return out

    return features


@dataclass
class ReferenceRun:
    """What :func:`tutorial_reference` returns. ``curve``: one (seconds since the clock started,
    the closure's total loss) per evaluation; ``targets_s``: seconds the targets took (part of
    every curve time); ``image``: the final image (1, 3, H, W), not clamped; ``content_target``,
    ``style_targets``: the targets; ``cpu_s``: this process's CPU seconds for all of it."""

    curve: list = field(default_factory=list)
    targets_s: float = 0.0
    seconds: float = 0.0
    cpu_s: float = 0.0
    image: object = None
    content_target: object = None
    style_targets: dict = field(default_factory=dict)


def tutorial_reference(features: Callable, content, style, *, content_layer: str, style_layers,
                       layer_weights: dict, alpha: float, beta: float, evals: int = 100,
                       losses=None) -> ReferenceRun:
    """The PyTorch neural-style tutorial's L-BFGS Gatys loop, with one setting set for every
    benchmark: start from the content image, fp32, one ``torch.optim.LBFGS([img], max_iter=evals)``
    step (torch's other defaults: lr 1, history 100, no line search), so at most ``evals``
    closure evaluations (fewer only if L-BFGS's tolerances stop it); no clamping; loss
    alpha L_content + beta sum_l w_l E_l (Gatys et al. 2016 eq. (7) with eq. (1), (4), (5)).

    Args:
        features: ``f(x) -> {layer: activations}`` for images (1, 3, H, W) in [0, 1]
            (:func:`torchvision_features`, or a ``FeatureNet``'s ``features`` with its layers).
        content, style: images (1, 3, H, W), float32, values in [0, 1].
        content_layer, style_layers, layer_weights: the objective's layers and w_l per style layer.
        alpha, beta: content and style weights.
        evals: L-BFGS's ``max_iter``, i.e. the closure evaluations.
        losses: the loss functions (``content_loss``, ``gram_matrix``, ``style_layer_loss``,
            ``style_loss``); default ``explorer.optim.losses``, or :func:`plain_losses`.

    The clock starts before the targets are computed.
    """
    import torch

    if losses is None:
        from explorer.optim import losses
    c0, start = own_cpu_s(), time.perf_counter()
    with torch.no_grad():
        content_t = features(content)[content_layer]
        fs = features(style)
        style_t = {l: losses.gram_matrix(fs[l], normalize=True)[0] for l in style_layers}
    run = ReferenceRun(targets_s=time.perf_counter() - start, content_target=content_t, style_targets=style_t)
    img = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([img], max_iter=evals)

    def closure():
        opt.zero_grad()
        feats = features(img)
        c = losses.content_loss(feats[content_layer], content_t)
        s = losses.style_loss({l: losses.style_layer_loss(feats[l], style_t[l]) for l in style_layers},
                              layer_weights)
        loss = alpha * c.sum() + beta * s.sum()
        loss.backward()
        run.curve.append((time.perf_counter() - start, float(loss.detach())))
        return loss

    opt.step(closure)
    run.seconds, run.cpu_s = time.perf_counter() - start, own_cpu_s() - c0
    run.image = img.detach()
    return run
