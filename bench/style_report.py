"""The derived figures and the printed table of ``bench_style.py`` (see bench/README.md for
how to read it): per-step times, ratios to the bare network, times to equal loss.
"""

from __future__ import annotations

import harness

CONTENT_SAMPLE, STYLE_SAMPLE = "astronaut", "gravel"


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
    print(harness.machine_line(w) + f"; torchvision {w['torchvision']}; bf16 cpu flags "
          f"{','.join(w['cpu_bf16_flags']) or 'none'}, oneDNN bf16 {'yes' if w['mkldnn_bf16_supported'] else 'no'}")
    print(f"images: content sample:{CONTENT_SAMPLE}, style sample:{STYLE_SAMPLE}; "
          f"L-BFGS lr 1, content weight 1, style weight {sizes[0]['style_weight']}; reference losses: "
          f"{'in-file (tutorial style)' if args.ref_losses == 'plain' else 'imported from explorer.optim.losses'}")
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
                                               if max(loads) > harness.BUSY_LIMIT else ""))
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
