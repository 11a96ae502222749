"""The gallery's paper-ratio picture: the real Caffe VGG19 (``vgg19-caffe-features-q8.pth``)
normalized as in Gatys et al. on the bundled samples (256 px), then tubingen in the style of
starry_night at 256 px with the paper's losses and alpha/beta = 1e-3 (alpha 1, beta 1000), 100
L-BFGS steps from faint white noise (Gatys et al. started from white noise; ``--init``, ``--noise-scale``), the app's other defaults. Prints the normalized network's per-channel mean on the
held-out pictures, the share of each style layer in the paper-scale style loss at the start,
the result's SSIM to the photo and its relative Gram error to the painting, and writes
``docs/gallery/paper_ratio_normalized_vgg19.png``.

    EXPLORER_SHARED=../shared python docs/make_paper_ratio.py [--steps 100] [--size 256]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from explorer.io import images, outputs  # noqa: E402
from explorer.nets import models, normalize  # noqa: E402
from explorer.optim.losses import gram_matrix  # noqa: E402
from explorer.style import gatys, settings as style_settings, transfer  # noqa: E402

STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--init", default="noise", help="the start (default noise: white noise, as Gatys et al.)")
    ap.add_argument("--noise-scale", type=float, default=0.01,
                    help="amplitude of the starting noise around mid-grey (1 = uniform [0, 1]: grainy after 100 steps)")
    args = ap.parse_args()
    shared = Path(os.environ.get("EXPLORER_SHARED") or ROOT.parent / "shared")
    source = shared / "weights" / "vgg19-caffe-features-q8.pth"
    torch.set_num_threads(int(os.environ.get('THREADS', '2')))
    t = time.perf_counter()
    base = models.load_model("vgg19", weights=source, device="cpu")
    result = normalize.normalize_vgg(base, normalize.normalization_images(size=256), size=256)
    path = normalize.write_normalized(base, result, Path(tempfile.mkdtemp()) / "vgg19-caffe-gatys-normalized.pth")
    net = models.load_model("vgg19", weights=path, device="cpu")
    print(f"normalized in {time.perf_counter() - t:.0f} s; inactive channels: "
          f"{ {k: len(v) for k, v in result.inactive.items()} }")
    held = sorted(shared.glob("images/*.jpg"))
    batch = [images.to_tensor(images.resize_long_side(images.load_image(p).image, 256)) for p in held]
    relus = [n for n in models.spatial_layers("vgg19") if n.startswith("relu")]
    means = normalize.channel_means(net, batch, relus)
    worst = 0.0
    for layer in relus:
        active = result.means[layer] > 0
        m = means[layer][active]
        worst = max(worst, float((m - 1).abs().max()))
        print(f"held-out {layer}: mean of channel means {float(m.mean()):.3f}, range {float(m.min()):.3f}-"
              f"{float(m.max()):.3f}, median |m-1| {float((m - 1).abs().median()):.3f}")
    print(f"held-out ({len(held)} pictures, {', '.join(p.stem for p in held)}): worst |m-1| {worst:.3f}")
    c = images.load_image(shared / "images" / "tubingen.jpg").image
    s = images.load_image(shared / "images" / "starry_night.jpg").image
    content, style_img = gatys.prepare_images(c, s, args.size)
    st = style_settings.StyleSettings(size=args.size, steps=args.steps, precision="fp32", loss_normalization="paper",
                                      content_weight=1.0, style_weight=1e3,
                                      init=args.init, noise_scale=args.noise_scale)
    for name, model in (("caffe", base), ("normalized", net)):
        run = transfer.StyleTransfer(model, content, style_img, st)
        with torch.no_grad():
            terms = run.losses(run.x)
        w = st.layer_weights
        share = {l: round(float(w[l] * e[0] / terms["style"][0]), 4) for l, e in terms["style_layers"].items()}
        print(f"{name}: style-loss share per layer at the start: {share}")
    run = transfer.StyleTransfer(net, content, style_img, st)
    t = time.perf_counter()
    for _ in run:
        pass
    res = run.result()
    print(f"stylized in {time.perf_counter() - t:.0f} s")
    out = res.image.clamp(0, 1)
    a = out[0].permute(1, 2, 0).numpy()
    b = content[0].permute(1, 2, 0).numpy()
    ssim = structural_similarity(a, b, channel_axis=-1, data_range=1.0)
    with torch.no_grad():
        fo, fs = net.features(out, STYLE), net.features(style_img, STYLE)
        errs = {l: float(((gram_matrix(fo[l], True) - gram_matrix(fs[l], True)) ** 2).sum() / (gram_matrix(fs[l], True) ** 2).sum())
                for l in STYLE}
        fc = net.features(content, STYLE)
        errc = {l: float(((gram_matrix(fc[l], True) - gram_matrix(fs[l], True)) ** 2).sum() / (gram_matrix(fs[l], True) ** 2).sum())
                for l in STYLE}
    print(f"SSIM to the photo {ssim:.3f} (the photo itself 1.000)")
    print(f"relative Gram error to the painting: result {np.mean(list(errs.values())):.3f} {errs}")
    print(f"relative Gram error to the painting: photo  {np.mean(list(errc.values())):.3f} {errc}")
    dest = ROOT / "docs" / "gallery" / "paper_ratio_normalized_vgg19.png"
    outputs.save_png_atomic(images.to_pil(out), dest, pnginfo={"weights": net.weights.label, "settings": outputs.json_text(
        st.to_dict(), indent=None)})
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
