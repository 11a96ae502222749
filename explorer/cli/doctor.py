"""``explorer doctor``: what this installation runs on, on one screen (or as JSON): Python,
torch and torchvision and whether they pair, the compute devices, the CPU's model and vector
instructions (AVX2, AVX-512, native bf16), what ``--precision auto`` resolves to, and the
weights found for each network.

Works on a broken installation too: the CLI runs it before checking that torch and
torchvision import, each part that cannot be had says why, and a torch or torchvision that
cannot be imported ends the report with the usual one ``error: ...`` line (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from ..core import installation

__all__ = ["run", "report", "format_report"]


def _part(fn):
    """``fn()``, or ``{"error": one line}`` when it fails (a broken torch, an unreadable cache)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not fail
        return {"error": " ".join(f"{type(exc).__name__}: {exc}".split())}


def _torch() -> dict:
    t, tv = installation.installed_version("torch"), installation.installed_version("torchvision")
    return {"torch": t, "torchvision": tv, "torchvision_for_torch": installation.torchvision_for(t or ""),
            "mismatch": installation.pair_mismatch(t, tv) if t and tv else None}


def _compute() -> dict:
    """Devices, CPU and precision; needs torch (not torchvision)."""
    import torch

    from ..core import devices

    flags = devices.cpu_flags()
    cuda = [{"index": i, "name": torch.cuda.get_device_name(i),
             "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
             "bf16": bool(torch.cuda.is_bf16_supported())}
            for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mps = bool(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available())
    auto = devices.resolve_device("auto")
    cpu_capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: None)()
    return {
        "device_auto": str(auto),
        "cuda": cuda,
        "cuda_build": torch.version.cuda,
        "mps": mps,
        "cpu": {"model": devices.cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                "avx2": "avx2" in flags, "avx512": "avx512f" in flags, "native_bf16": devices.cpu_has_bf16(),
                "torch_kernels": cpu_capability},
        "precision_auto": devices.precision_name(devices.resolve_precision("auto", auto)),
        "precision_auto_cpu": devices.precision_name(devices.resolve_precision("auto", torch.device("cpu"))),
    }


def _weights() -> dict:
    """Each network's weights file and where it was found; needs torchvision."""
    from ..nets import weights

    rows = weights.weights_status()
    return {"networks": [{k: r[k] for k in ("model", "file", "size_mb", "found")} for r in rows],
            "torch_cache": rows[0]["cache_dir"], "weights_dir": rows[0]["weights_dir"]}


def report() -> dict:
    """The doctor's findings as plain JSON-able data.

    Returns:
        ``python`` (version, executable, platform), ``torch`` (installed torch and torchvision
        versions, the torchvision release that goes with the torch, ``mismatch``: why the two do
        not pair or None), ``problem`` (the one-line message when they cannot be imported, else
        None), ``compute`` (``device_auto``, ``cuda`` GPUs with memory in GiB, ``mps``, ``cpu``:
        model, cores, AVX2 / AVX-512 / native bf16, torch's kernels; ``precision_auto`` on the
        auto device and on the CPU) and ``weights`` (per network: model, file, size in MB,
        found path or None; torch's cache and ``EXPLORER_WEIGHTS_DIR``). A part that cannot be
        had is ``{"error": one line}``. Never raises.
    """
    out = {
        "python": {"version": platform.python_version(), "executable": sys.executable, "platform": platform.platform()},
        "torch": _part(_torch),
        "problem": installation.torch_problem(),
    }
    out["compute"] = _part(_compute)
    out["weights"] = {"error": "not checked: torch or torchvision cannot be imported"} if out["problem"] else _part(_weights)
    return out


def _yes(flag) -> str:
    return "yes" if flag else "no"


def format_report(r: dict) -> str:
    """:func:`report` as plain text, one screen (about 20 lines)."""
    py, t, c, w = r["python"], r["torch"], r["compute"], r["weights"]
    lines = [f"Python       {py['version']} ({py['executable']}) on {py['platform']}"]
    if "error" in t:
        lines.append(f"torch        unknown ({t['error']})")
    else:
        lines.append(f"torch        {t['torch'] or 'not installed'}")
        pairs = "" if not (t["torch"] and t["torchvision"]) else (
            f"  (does not pair: {t['mismatch']}; torch {t['torch']} needs torchvision {t['torchvision_for_torch']})"
            if t["mismatch"] else f"  (pairs with torch {t['torch']})")
        lines.append(f"torchvision  {t['torchvision'] or 'not installed'}{pairs}")
    lines.append("Import       " + ("FAILED: the error line at the end says why and how to fix it" if r["problem"]
                                     else "ok: torch and torchvision load together"))
    if "error" in c:
        lines.append(f"Compute      unknown ({c['error']})")
    else:
        cpu = c["cpu"]
        gpus = ", ".join(f"cuda:{g['index']} {g['name']} ({g['memory_gib']:g} GiB, bf16 {_yes(g['bf16'])})"
                         for g in c["cuda"]) or f"none (torch built {'with CUDA ' + c['cuda_build'] if c['cuda_build'] else 'without CUDA'})"
        lines += [f"Device       {c['device_auto']} (--device auto); CUDA GPUs: {gpus}; Apple MPS: {_yes(c['mps'])}",
                  f"CPU          {cpu['model']}, {cpu['cores']} cores, torch uses {cpu['torch_threads']} threads"
                  + (f" and {cpu['torch_kernels']} kernels" if cpu["torch_kernels"] else ""),
                  f"             AVX2 {_yes(cpu['avx2'])}, AVX-512 {_yes(cpu['avx512'])}, "
                  f"native bf16 (AVX512-BF16 or AMX) {_yes(cpu['native_bf16'])}",
                  f"Precision    --precision auto runs the networks in {c['precision_auto']} on {c['device_auto']}"
                  + ("" if c["device_auto"] == "cpu" else f" ({c['precision_auto_cpu']} on the CPU)")
                  + ("" if cpu["native_bf16"] else "; bf16 here is emulated, slow")]
    if "error" in w:
        lines.append(f"Weights      unknown ({w['error']})")
    else:
        lines.append("Weights")
        lines += [f"  {n['model']:13s} {n['file']:34s} {n['size_mb']:7.1f} MB  {n['found'] or 'missing'}"
                  for n in w["networks"]]
        lines.append(f"  torch cache: {w['torch_cache']}; EXPLORER_WEIGHTS_DIR: {w['weights_dir'] or '(not set)'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the report on stdout (text, or JSON with ``--json``).

    Returns:
        0; 2 when torch or torchvision cannot be imported (after the report, one ``error: ...``
        line on stderr naming both versions and the fix).
    """
    r = report()
    print(json.dumps(r, indent=2) if args.json else format_report(r))
    if r["problem"]:
        print(f"error: {r['problem']}", file=sys.stderr)
        return 2
    return 0
