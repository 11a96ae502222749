"""Make the README gallery: the bundled scikit-image samples through the real trained networks.

Uses the workplace's real weights (``--weights-dir``, default ``../shared/weights``: the original
Caffe VGG19 conv layers and MobileNetV2), never copied into the repository; only the pictures it
makes are written, to ``docs/gallery/``, each labelled with the weights file in its caption (and
in the PNG's ``weights`` text chunk).

    python docs/make_gallery.py              # about 3 minutes on 2 CPU cores

Pictures:

* style transfer with the page's defaults (256 px, 100 L-BFGS steps, relative losses, the default beta)
  for every content sample x style sample, as one grid (``style_grid.png``);
* Deep Dream of chelsea on VGG19 relu4_3 and on MobileNetV2 block10 (the pages' default layers);
* the style-energy occlusion and Grad-CAM maps of chelsea on VGG19 (the saliency page's defaults);
* the strongest channels of VGG19 relu3_1 for chelsea (the activations page's grid);
* what each layer keeps: the default reconstruction figure (128 px, the default steps, content
  relu1_2 ... relu5_2 and style relu1_1 ... relu5_1 from white noise) of tubingen + starry_night
  from the shared pictures (``--images-dir``), ``what_each_layer_keeps.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.activations import views
from explorer.nets import models
from explorer.nets.layers import layer_activations
from explorer.saliency import attribution
from explorer.dream import deepdream as dream
from explorer.io import images, samples
from explorer.style import transfer as style  # noqa: E402
from explorer.io import outputs
from explorer.dream import settings as dream_settings
from explorer.style import gatys
from explorer.style import settings as style_settings
from explorer.style import reconstruct

OUT = ROOT / "docs" / "gallery"


def _find(folder: Path, prefix: str) -> Path:
    found = sorted(folder.glob(f"{prefix}-*.pth"))
    if not found:
        sys.exit(f"error: no {prefix}-*.pth in {folder}; pass --weights-dir")
    return found[0]


def _save(img: Image.Image, name: str, label: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    outputs.save_png_atomic(img, OUT / name, pnginfo={"weights": label})
    print(f"wrote docs/gallery/{name}", file=sys.stderr)


def _caption(img: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 16), "white")
    out.paste(img, (0, 0))
    ImageDraw.Draw(out).text((3, img.height + 2), text, fill=(0, 0, 0))
    return out


def style_grid(vgg: models.FeatureNet) -> None:
    contents, styles = list(samples.SAMPLE_CONTENT.values()), list(samples.SAMPLE_STYLE.values())
    cell, cells = 200, {}
    for c in contents:
        for s in styles:
            ct, st = gatys.prepare_images(samples.load_sample(c).image, samples.load_sample(s).image, 256)
            run = style.StyleTransfer(vgg, ct, st, style_settings.StyleSettings(size=256))
            for _ in run:
                pass
            pil = images.to_pil(run.result().image)
            pil.thumbnail((cell, cell))
            cells[c, s] = _caption(pil, f"{c} x {s}")
            print(f"  {c} x {s}: {run.result().seconds:.1f} s", file=sys.stderr)
    w = max(im.width for im in cells.values()) + 4
    heights = [max(cells[c, s].height for s in styles) + 4 for c in contents]
    grid = Image.new("RGB", (w * len(styles), sum(heights)), "white")
    for i, c in enumerate(contents):
        for j, s in enumerate(styles):
            grid.paste(cells[c, s], (j * w, sum(heights[:i])))
    _save(grid, "style_grid.png", vgg.weights.label)


def dreams(vgg: models.FeatureNet, mobilenet: models.FeatureNet) -> None:
    x = images.to_tensor(images.resize_long_side(samples.load_sample("chelsea").image, 320))
    for net, name in ((vgg, "dream_vgg19.png"), (mobilenet, "dream_mobilenet_v2.png")):
        run = dream.DreamRun(net, x, dream_settings.DreamSettings(model=net.name, seed=0))
        for _ in run:
            pass
        _save(images.to_pil(run.result().image), name, net.weights.label)


def heatmaps(vgg: models.FeatureNet) -> None:
    x = images.to_tensor(images.resize_long_side(samples.load_sample("chelsea").image, 256))
    for method in ("occlusion", "gradcam"):
        heat = attribution.attribute(vgg, x, attribution.AttributionSettings(method=method))
        _save(attribution.overlay_image(heat.image, heat.importance, 0.6), f"saliency_{method}.png", vgg.weights.label)


def channels(vgg: models.FeatureNet) -> None:
    x = images.to_tensor(images.resize_long_side(samples.load_sample("chelsea").image, 256))
    acts = layer_activations(vgg, x, "relu3_1")
    _save(views.channel_grid(acts, views.top_channels(acts, 8), cols=4), "channels_relu3_1.png",
          vgg.weights.label)


def layers_figure(vgg: models.FeatureNet, images_dir: Path) -> None:
    """Content reconstructions of tubingen and style reconstructions of starry_night, the default
    figure's settings, captioned with the weights file."""
    found = [images_dir / "tubingen.jpg", images_dir / "starry_night.jpg"]
    if not all(f.is_file() for f in found):
        sys.exit(f"error: tubingen.jpg and starry_night.jpg are not both in {images_dir}; pass --images-dir")
    content, painting = (images.load_image(f).image for f in found)
    run = reconstruct.Reconstruction(vgg, content, painting, reconstruct.ReconstructSettings(precision="fp32"))
    for _ in run:
        pass
    result = run.result()
    for p in result.pictures:
        print(f"  {p.kind} {p.label}: relative error {p.relative_error:.4f}, {p.seconds:.1f} s", file=sys.stderr)
    fig = _caption(result.figure(), f"tubingen.jpg + starry_night.jpg; {vgg.weights.label}")
    _save(fig, "what_each_layer_keeps.png", vgg.weights.label)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-dir", type=Path, default=ROOT.parent / "shared" / "weights")
    ap.add_argument("--images-dir", type=Path, default=ROOT.parent / "shared" / "images")
    ap.add_argument("--only", choices=["style", "dream", "saliency", "channels", "layers"])
    a = ap.parse_args()
    vgg = models.load_model("vgg19", weights=str(_find(a.weights_dir, "vgg19")))
    if a.only in (None, "style"):
        style_grid(vgg)
    if a.only in (None, "dream"):
        dreams(vgg, models.load_model("mobilenet_v2", weights=str(_find(a.weights_dir, "mobilenet_v2"))))
    if a.only in (None, "saliency"):
        heatmaps(vgg)
    if a.only in (None, "channels"):
        channels(vgg)
    if a.only in (None, "layers"):
        layers_figure(vgg, a.images_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
