"""Semantic regions for Deep Photo Style Transfer (F. Luan, S. Paris, E. Shechtman, K. Bala,
"Deep Photo Style Transfer", CVPR 2017, eq. (3a)-(3b)): the masks of the regions shared by the
content and the style image, which the augmented style loss (:mod:`explorer.photo`) matches
region by region.

Region masks come from colour-coded mask images (:func:`load_color_mask` and
:func:`match_regions`, the input of Luan et al.'s own code), from k-means colour clustering of
both images at once (:func:`auto_masks`, k-means++ seeding of Arthur & Vassilvitskii 2007, no
weights needed), or from torchvision's DeepLabV3 semantic segmentation
(:func:`segmentation_masks`, pretrained weights needed; never untrained).

No Streamlit here; pages and the CLI share this module.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.cluster.vq import kmeans2, vq
from scipy.ndimage import uniform_filter
from skimage.color import rgb2lab
from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights, deeplabv3_resnet50

from ..io.images import load_mask_image
from .matting import as_hwc
from ..nets.download import fetch_weights
from ..nets.weights import WeightsError, cache_dir, load_state_dict_into, read_state_dict, weights_dir
from ..core.devices import resolve_device

__all__ = [
    "MIN_COLOR_FRACTION",
    "MAX_REGIONS",
    "CLUSTER_COLORS",
    "RegionMasks",
    "load_color_mask",
    "match_regions",
    "auto_masks",
    "segmentation_masks",
    "segmentation_weights_file",
    "voc_color",
    "clear_segmentation_cache",
]

#: Colours covering less than this fraction of a mask image are antialiasing speckles; they
#: are merged into the nearest major colour (:func:`load_color_mask`).
MIN_COLOR_FRACTION = 0.005
#: Most regions a colour mask may have (more means a photo was given instead of a mask).
MAX_REGIONS = 32


_UNASSIGNED = ((96, 96, 96), (160, 160, 160))  # checkerboard for pixels of no region


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


@dataclass
class RegionMasks:
    """Semantic regions shared by the content and the style image (Luan et al. 2017 eq. (3a)-(3b)).

    Attributes:
        content: (R, H_c, W_c) float32 0/1 masks on the content image (disjoint). Pixels in no
            mask belong to a region the style image lacks: they get no style target.
        style: (R, H_s, W_s) float32 0/1 masks on the style image (disjoint).
        names: R display names, e.g. ``"#ff0000"``, ``"cluster 3"`` or ``"person"``.
        colors: R display colours (r, g, b), 0-255.
        notes: plain-words notes, e.g. regions dropped because only one image has them.

    Raises:
        ValueError: (on construction) inconsistent shapes or list lengths.
    """

    content: torch.Tensor
    style: torch.Tensor
    names: list[str]
    colors: list[tuple[int, int, int]]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.content.dim() != 3 or self.style.dim() != 3:
            raise ValueError(f"region masks must be (R, H, W); got content {tuple(self.content.shape)}, "
                             f"style {tuple(self.style.shape)}")
        r = self.content.shape[0]
        if self.style.shape[0] != r or len(self.names) != r or len(self.colors) != r:
            raise ValueError(f"{r} content regions but {self.style.shape[0]} style regions, {len(self.names)} names "
                             f"and {len(self.colors)} colours")

    @property
    def count(self) -> int:
        """R, the number of shared regions."""
        return int(self.content.shape[0])

    def _picture(self, masks: torch.Tensor) -> Image.Image:
        _, h, w = masks.shape
        yy, xx = np.mgrid[0:h, 0:w]
        checker = ((yy // 8 + xx // 8) % 2).astype(bool)
        canvas = np.where(checker[..., None], np.array(_UNASSIGNED[1], np.uint8), np.array(_UNASSIGNED[0], np.uint8))
        m = masks.detach().cpu().numpy() > 0.5
        if len(m):
            palette = np.asarray(self.colors, dtype=np.uint8)
            any_region = m.any(0)
            canvas[any_region] = palette[m.argmax(0)[any_region]]
        return Image.fromarray(np.ascontiguousarray(canvas, dtype=np.uint8), mode="RGB")

    def preview_images(self) -> tuple[Image.Image, Image.Image]:
        """Colour-coded pictures of the content and the style label maps (each region in its
        display colour; pixels of no shared region as a grey checkerboard), at the masks' sizes.

        Returns:
            (content picture, style picture), 8-bit RGB PIL images.
        """
        return self._picture(self.content), self._picture(self.style)

    def fractions(self) -> list[tuple[float, float]]:
        """Per region, the fraction of the content and of the style image it covers (0..1)."""
        c = self.content.flatten(1).float().mean(1).tolist()
        s = self.style.flatten(1).float().mean(1).tolist()
        return list(zip(c, s))


def _check_labels(labels, n: int, what: str) -> torch.Tensor:
    t = torch.as_tensor(labels)
    if t.dim() != 2:
        raise ValueError(f"{what} labels must be a 2-D (H, W) map; got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{what} labels must be integers; got {t.dtype}")
    t = t.long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        raise ValueError(f"{what} labels must be in 0..{n - 1} (one per colour); got {int(t.min())}..{int(t.max())}")
    return t


def _match(c_labels: torch.Tensor, c_keys: Sequence, s_labels: torch.Tensor, s_keys: Sequence,
           names: dict, colors: dict) -> RegionMasks:
    """Regions (identified by key) present in both label maps -> RegionMasks."""
    c_present = [c_keys[i] for i in torch.unique(c_labels).tolist()]
    s_present = [s_keys[i] for i in torch.unique(s_labels).tolist()]
    shared = [k for k in c_present if k in s_present]
    if not shared:
        raise ValueError(f"the content and style masks share no colour: content has "
                         f"{', '.join(names[k] for k in c_present)}; "
                         f"style has {', '.join(names[k] for k in s_present)}")
    notes = []
    c_total = c_labels.numel()
    for k in c_present:
        if k not in s_present:
            frac = float((c_labels == c_keys.index(k)).sum()) / c_total
            notes.append(f"region {names[k]} appears only in the content mask ({frac:.0%} of the content image): "
                         "no style target there, only the content and photorealism terms act on those pixels")
    for k in s_present:
        if k not in c_present:
            notes.append(f"region {names[k]} appears only in the style mask; ignored")
    c_idx = torch.tensor([c_keys.index(k) for k in shared])
    s_idx = torch.tensor([s_keys.index(k) for k in shared])
    content = (c_labels[None] == c_idx[:, None, None]).float()
    style = (s_labels[None] == s_idx[:, None, None]).float()
    return RegionMasks(content, style, [names[k] for k in shared], [tuple(int(v) for v in colors[k]) for k in shared],
                       notes)


def match_regions(content_labels, content_colors: Sequence[tuple[int, int, int]],
                  style_labels, style_colors: Sequence[tuple[int, int, int]]) -> RegionMasks:
    """Pair the regions of two colour-coded label maps by colour (Luan et al. 2017 eq. (3a)-(3b)).

    Regions whose colour occurs in both maps become the R shared regions (in the order of
    ``content_colors``); a colour only in the style map is dropped with a note; a colour only
    in the content map is dropped too, and the note says that its pixels get no style target
    (only the content and photorealism terms act there). Colours listed but not used by any
    pixel are ignored.

    Args:
        content_labels: (H_c, W_c) integer map, values indexing ``content_colors``.
        content_colors: (r, g, b) 0-255 colour of each content label.
        style_labels: (H_s, W_s) integer map, values indexing ``style_colors``.
        style_colors: (r, g, b) colour of each style label.

    Returns:
        :class:`RegionMasks` named by hex colour (``"#ff0000"``).

    Raises:
        ValueError: maps that are not 2-D integer maps with valid indices, or no shared colour
            ("the content and style masks share no colour: ...").
    """
    cc = [tuple(int(v) for v in c) for c in content_colors]
    sc = [tuple(int(v) for v in c) for c in style_colors]
    cl = _check_labels(content_labels, len(cc), "content")
    sl = _check_labels(style_labels, len(sc), "style")
    keys = set(cc) | set(sc)
    return _match(cl, cc, sl, sc, {k: _hex(k) for k in keys}, {k: k for k in keys})


def load_color_mask(ref, size: tuple[int, int], role: str = "content mask"
                    ) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """Read a colour-coded region mask (same colour = same region), as used by Luan et al.

    The image is read with :func:`explorer.io.images.load_image` (any format; transparency on
    white), resized to ``size`` with nearest-neighbour sampling (no new colours), and colours
    that cover less than :data:`MIN_COLOR_FRACTION` (0.5 %) of the resized pixels, the
    antialiased edges of painted masks, are merged into the nearest major colour (Euclidean
    RGB). Small regions painted on purpose below that size are merged as well.

    Args:
        ref: a path, bytes, or a binary file object (e.g. a Streamlit upload).
        size: (H, W) of the image the mask belongs to, at its working size, pixels.
        role: what the mask is for; it starts error messages (``"style mask"``).

    Returns:
        (labels, colors): (H, W) ``torch.long`` map with values 0..K-1, and the K region
        colours (r, g, b), 0-255, in ascending order of the packed 0xRRGGBB value.

    Raises:
        explorer.io.images.ImageError: an unreadable file (one-line message).
        ValueError: an aspect ratio more than 5 % off the image's (the message gives both
            sizes), no colour large enough to be a region, or more than :data:`MAX_REGIONS`
            regions (a photo instead of a flat-colour mask).
    """
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be (H, W) in pixels; got {size!r}")
    image = f"the {role.removesuffix(' mask')} image" if role.endswith(" mask") else "its image"
    li = load_mask_image(ref, (h, w), role=role, image=image)
    mw, mh = li.image.size
    im = li.image if (mw, mh) == (w, h) else li.image.resize((w, h), Image.NEAREST)
    rgb = np.asarray(im, dtype=np.uint8).reshape(-1, 3).astype(np.int64)
    codes = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    major = counts >= MIN_COLOR_FRACTION * codes.size
    if not major.any():
        raise ValueError(f"{role} {li.name}: no colour covers {MIN_COLOR_FRACTION:.1%} of the mask; "
                         "paint the regions in flat colours")
    if int(major.sum()) > MAX_REGIONS:
        raise ValueError(f"{role} {li.name} has {int(major.sum())} colours covering {MIN_COLOR_FRACTION:.1%} or more "
                         f"each; a mask has at most {MAX_REGIONS} flat-colour regions (is it a photo?)")
    palette = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], 1)      # (U, 3)
    major_idx = np.flatnonzero(major)
    d = ((palette[:, None, :] - palette[None, major_idx, :]) ** 2).sum(-1)          # (U, K)
    to_major = d.argmin(1)                                                            # major colours map to themselves
    labels = to_major[inverse.reshape(-1)].reshape(h, w)
    colors = [tuple(int(v) for v in palette[i]) for i in major_idx]
    return torch.from_numpy(labels.astype(np.int64)), colors


# ----------------------------------------------------------------------------- k-means masks

#: Display colours of k-means clusters (distinct hues, so neighbouring clusters differ).
CLUSTER_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
                  (148, 103, 189), (140, 86, 75), (227, 119, 194), (188, 189, 34)]
_KMEANS_SAMPLE = 10_000  # pixels sampled from each image to fit the centroids


def _image_hwc(t: torch.Tensor, what: str) -> np.ndarray:
    if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.shape[0] != 1 or t.shape[1] != 3:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"the {what} image must have shape (1, 3, H, W); got {shape}")
    return as_hwc(t)


def _kmeans_pp(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007); fewer than k centres when the data has
    fewer distinct points."""
    centres = [data[rng.integers(len(data))]]
    d2 = ((data - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 1e-12:
            break
        c = data[rng.choice(len(data), p=d2 / total)]
        centres.append(c)
        d2 = np.minimum(d2, ((data - c) ** 2).sum(1))
    return np.stack(centres)


def _majority3(labels: np.ndarray, k: int) -> np.ndarray:
    """3x3 majority (mode) filter of a label map (ties: the lower label)."""
    onehot = (labels[None] == np.arange(k)[:, None, None]).astype(np.float32)
    votes = uniform_filter(onehot, size=(1, 3, 3), mode="nearest")
    return votes.argmax(0)


def auto_masks(content: torch.Tensor, style: torch.Tensor, k: int, seed: int = 0, *,
               smooth: bool = True) -> RegionMasks:
    """Region masks without any weights: k-means colour clusters shared by both images.

    Both images are converted to CIELAB (``skimage.color.rgb2lab``, so distances follow
    perceived colour differences); up to 10 000 pixels of each image are sampled (seeded) and
    clustered *together* with ``scipy.cluster.vq.kmeans2`` (k-means++ seeding from the same
    seed, then Lloyd iterations), so cluster c means the same colours in both images. Every
    pixel then gets its nearest centroid; a 3x3 majority filter removes isolated pixels
    (``smooth``). Clusters are numbered by lightness (cluster 1 darkest) and paired with
    :func:`match_regions`' rules (a cluster only one image has is dropped with a note).
    Deterministic for a given seed.

    Args:
        content, style: (1, 3, H, W) images in [0, 1] (sizes may differ).
        k: number of clusters, 2..8. Fewer regions result when the images have fewer distinct
            colours (noted).
        seed: random seed of the sampling and the seeding.
        smooth: apply the 3x3 majority filter.

    Returns:
        :class:`RegionMasks` named ``"cluster 1"`` ... with distinct display colours.

    Raises:
        ValueError: bad shapes or values, k outside 2..8, or no cluster in both images.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= len(CLUSTER_COLORS):
        raise ValueError(f"k (the number of colour clusters) must be a whole number from 2 to "
                         f"{len(CLUSTER_COLORS)}; got {k!r}")
    c_img, s_img = _image_hwc(content, "content"), _image_hwc(style, "style")
    c_lab = rgb2lab(c_img).reshape(-1, 3)
    s_lab = rgb2lab(s_img).reshape(-1, 3)
    rng = np.random.default_rng(int(seed))
    sample = np.concatenate([
        lab[rng.choice(len(lab), size=min(len(lab), _KMEANS_SAMPLE), replace=False)] for lab in (c_lab, s_lab)])
    init = _kmeans_pp(sample, int(k), rng)
    notes = []
    if len(init) < k:
        notes.append(f"the images have only {len(init)} distinct colours, so {len(init)} clusters instead of {k}")
    with warnings.catch_warnings():  # an empty cluster keeps its centre (dropped below if unused)
        warnings.simplefilter("ignore")
        centroids, _ = kmeans2(sample, init, iter=20, minit="matrix", missing="warn")
    order = np.argsort(centroids[:, 0], kind="stable")           # by lightness L*
    centroids = centroids[order]
    kk = len(centroids)
    c_lab_labels = vq(c_lab, centroids, check_finite=False)[0].reshape(c_img.shape[:2])
    s_lab_labels = vq(s_lab, centroids, check_finite=False)[0].reshape(s_img.shape[:2])
    if smooth:
        c_lab_labels = _majority3(c_lab_labels, kk)
        s_lab_labels = _majority3(s_lab_labels, kk)
    keys = list(range(kk))
    masks = _match(torch.from_numpy(c_lab_labels.astype(np.int64)), keys,
                   torch.from_numpy(s_lab_labels.astype(np.int64)), keys,
                   {i: f"cluster {i + 1}" for i in keys}, {i: CLUSTER_COLORS[i] for i in keys})
    masks.notes = notes + [n.replace("mask", "image") for n in masks.notes]
    return masks


# ----------------------------------------------------------------------------- segmentation masks

_seg_lock = threading.Lock()
_seg_models: dict[tuple[str, str], torch.nn.Module] = {}


def _seg_weights():
    return DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1


def segmentation_weights_file() -> str:
    """File name of the DeepLabV3 weights (``deeplabv3_resnet50_coco-cd0a2569.pth``), to put
    in ``EXPLORER_WEIGHTS_DIR`` or torch's cache for offline use."""
    return Path(urlparse(_seg_weights().url).path).name


def _seg_missing(reason: str):
    wts = _seg_weights()
    fname = segmentation_weights_file()
    size = float(wts.meta.get("_file_size", 0.0))
    wd = weights_dir()
    where = f"EXPLORER_WEIGHTS_DIR ({wd})" if wd else "a folder named by EXPLORER_WEIGHTS_DIR"
    head = (f"no pretrained weights for DeepLabV3 segmentation masks: {fname} ({size:.0f} MB) is not in {where} "
            f"nor in torch's cache ({cache_dir()}), and {reason}. Download it on a machine with internet "
            f"(python -c \"from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights as W; "
            f"W.COCO_WITH_VOC_LABELS_V1.get_state_dict()\" saves it in torch's cache) and copy the file into one "
            f"of those folders")
    return WeightsError(head + ", or use colour mask files or k-means masks (auto) instead.",
                        app_message=head + ", or pick colour mask files or k-means masks instead.")


def _seg_source() -> Path:
    """The DeepLabV3 weights file: EXPLORER_WEIGHTS_DIR, then torch's cache, then a download
    with a timeout (unless EXPLORER_OFFLINE=1), :func:`explorer.nets.download.fetch_weights`."""
    try:
        return fetch_weights(_seg_weights())
    except WeightsError as exc:
        raise _seg_missing(str(exc)) from None


def _seg_model(device: torch.device) -> torch.nn.Module:
    """DeepLabV3-ResNet50 with the pretrained COCO/VOC weights (never untrained), cached."""
    path = _seg_source()
    key = (str(path), str(device))
    with _seg_lock:
        net = _seg_models.get(key)
        if net is None:
            sd = read_state_dict(path)
            with torch.device("meta"):
                net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
            load_state_dict_into(net, sd, "deeplabv3_resnet50", str(path))
            net.aux_classifier = None
            net = net.eval().requires_grad_(False).to(device)
            _seg_models.clear()  # one model (about 160 MB) at a time
            _seg_models[key] = net
    return net


def clear_segmentation_cache() -> None:
    """Drop the cached DeepLabV3 network (about 160 MB), e.g. after a test or to free memory;
    the next :func:`segmentation_masks` loads it again."""
    with _seg_lock:
        _seg_models.clear()


def voc_color(i: int) -> tuple[int, int, int]:
    """The PASCAL VOC colour map's colour of class ``i`` (0..255), (r, g, b) 0-255: the display
    colour of segmentation class i in :func:`segmentation_masks`."""
    r = g = b = 0
    c = i
    for j in range(8):
        r |= ((c >> 0) & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return (r, g, b)


@torch.no_grad()
def _segment(net: torch.nn.Module, image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    x = image.float()
    if scale != 1.0:
        x = F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                          align_corners=False, antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
    logits = net((x - mean) / std)["out"].float()
    logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].cpu()


def segmentation_masks(content: torch.Tensor, style: torch.Tensor, device: str | torch.device | None = None, *,
                       size: int = 520) -> RegionMasks:
    """Region masks from semantic segmentation: torchvision's DeepLabV3-ResNet50 with the
    ``COCO_WITH_VOC_LABELS_V1`` weights (21 PASCAL VOC classes: background, aeroplane, ...,
    tvmonitor), as Luan et al. 2017 use automatic segmentation when no masks are painted.

    Each image is resized so that its shorter side is ``size`` px (the weights' own 520 px),
    normalized with ImageNet mean/std, segmented, and the per-class scores are resized back to
    the image's size before the arg-max. Classes found in both images become the regions
    (:func:`match_regions`' rules), named by the weights' categories, in the VOC colour map.

    Weights are found as for the classification networks (:mod:`explorer.nets.models`):
    ``EXPLORER_WEIGHTS_DIR``, then torch's cache (``$TORCH_HOME/hub/checkpoints``), then a
    download through torchvision's weights API unless ``EXPLORER_OFFLINE=1``; loaded with
    ``torch.load(weights_only=True)``. There is never an untrained fallback: untrained
    segmentation would be meaningless.

    Args:
        content, style: (1, 3, H, W) images in [0, 1].
        device: where the network runs (:func:`explorer.core.devices.resolve_device`; default auto).
        size: the shorter side, pixels, the network sees (>= 32).

    Returns:
        :class:`RegionMasks` at the content's and the style's sizes.

    Raises:
        explorer.nets.weights.WeightsError: no pretrained weights (one line saying how to get them),
            or a file that is not these weights.
        ValueError: bad shapes or values, or no class found in both images.
    """
    _image_hwc(content, "content")
    _image_hwc(style, "style")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be a whole number of pixels >= 32; got {size!r}")
    dev = resolve_device(device if device is not None else "auto")
    net = _seg_model(dev)
    c_labels = _segment(net, content.to(dev), int(size))
    s_labels = _segment(net, style.to(dev), int(size))
    cats = list(_seg_weights().meta["categories"])
    keys = list(range(len(cats)))
    names = {i: ("background" if cats[i] == "__background__" else cats[i]) for i in keys}
    return _match(c_labels, keys, s_labels, keys, names, {i: voc_color(i) for i in keys})
