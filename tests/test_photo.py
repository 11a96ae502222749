"""Deep Photo Style Transfer building blocks (explorer.style.matting, explorer.style.regions, explorer.photo):
the Matting Laplacian (Levin et al. 2008 eq. (12)) against a loop-based construction, the photorealism regularizer (Luan et al. 2017
eq. (2)) and its analytic gradient, colour / k-means / segmentation region masks, and the
augmented style loss (Luan et al. 2017 eq. (3a)-(3b)). CPU, untrained VGG19 (seed 0), 9-64 px."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from PIL import Image

from explorer.style import matting as M
from explorer.style import guides as GD
from explorer.optim import losses as L
from explorer.style import regions as R
from explorer.style.guides import layer_masks
from explorer.optim.losses import guided_gram
from explorer.io.images import ImageError
from explorer.nets.weights import WeightsError
from explorer.style.gatys import style_targets
from explorer.optim.losses import gram_matrix, style_layer_loss
from tests.helpers import picture, stripes

LAYERS = ("relu1_1", "relu2_1", "relu3_1")
RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# --------------------------------------------------------------------------- Matting Laplacian

def dense_laplacian(img: np.ndarray, eps: float = 1e-7, r: int = 1) -> np.ndarray:
    """Levin et al. 2008 eq. (12) written out with loops over windows and pixel pairs."""
    h, w, _ = img.shape
    s = 2 * r + 1
    n = s * s
    lap = np.zeros((h * w, h * w))
    for top in range(h - s + 1):
        for left in range(w - s + 1):
            idx = [(top + a) * w + (left + b) for a in range(s) for b in range(s)]
            colours = img[top:top + s, left:left + s].reshape(n, 3)
            mu = colours.mean(0)
            cov = (colours - mu).T @ (colours - mu) / n
            inv = np.linalg.inv(cov + eps / n * np.eye(3))
            for p in range(n):
                for q in range(n):
                    lap[idx[p], idx[q]] += (p == q) - (1 + (colours[p] - mu) @ inv @ (colours[q] - mu)) / n
    return lap


@pytest.mark.parametrize("h, w, r", [(12, 12, 1), (9, 13, 1), (8, 11, 2), (6, 3, 1)])
def test_laplacian_equals_the_loop_construction_of_eq12(h, w, r):
    img = np.random.default_rng(h * w + r).random((h, w, 3))
    m = M.matting_laplacian(img, win_rad=r)
    assert isinstance(m, sp.csr_matrix) and m.dtype == np.float64 and m.shape == (h * w, h * w)
    assert m.has_canonical_format  # sorted column indices, no duplicates
    ref = dense_laplacian(img, r=r)
    np.testing.assert_allclose(m.toarray(), ref, rtol=0, atol=1e-9 * np.abs(ref).max())


def test_laplacian_is_symmetric_psd_with_constants_in_its_null_space():
    img = np.random.default_rng(0).random((12, 12, 3))
    m = M.matting_laplacian(img)
    dense = m.toarray()
    assert np.array_equal(dense, dense.T)  # each pair is computed once and stored twice
    eig = np.linalg.eigvalsh(dense)
    assert eig.min() >= -1e-8 * eig.max()
    assert eig.max() > 1  # not a zero matrix
    np.testing.assert_allclose(m @ np.ones(144), 0, atol=1e-10)


def test_laplacian_row_major_order_and_band_structure():
    h, w = 10, 14
    img = np.random.default_rng(1).random((h, w, 3))
    m = M.matting_laplacian(img)
    # pixel (y, x) couples with the pixels within 2 rows and 2 columns, and only those
    near = lambda n: sum(min(n - 1, i + 2) - max(0, i - 2) + 1 for i in range(n))  # noqa: E731
    assert m.nnz == near(h) * near(w)
    rows, cols = m.nonzero()
    assert (np.abs(rows // w - cols // w) <= 2).all() and (np.abs(rows % w - cols % w) <= 2).all()
    # the transpose of the image gives the same matrix under the transposed pixel order
    mt = M.matting_laplacian(img.transpose(1, 0, 2).copy())
    perm = np.arange(h * w).reshape(h, w).T.reshape(-1)
    np.testing.assert_allclose(mt.toarray(), m.toarray()[np.ix_(perm, perm)], atol=1e-9)


def test_laplacian_accepts_tensors_and_arrays_alike():
    x = picture(9, 11)
    a = M.matting_laplacian(x)
    b = M.matting_laplacian(x[0])
    c = M.matting_laplacian(x[0].permute(1, 2, 0).numpy().astype(np.float64))
    assert (a != b).nnz == 0
    np.testing.assert_allclose(a.toarray(), c.toarray(), atol=1e-6)  # float32 -> float64 rounding


@pytest.mark.parametrize("image, kwargs, match", [
    (torch.rand(2, 3, 8, 8), {}, "one image"),
    (torch.rand(4, 8, 8), {}, r"\(3, H, W\)"),
    (np.zeros((8, 8, 3), dtype=np.uint8), {}, "float"),
    (np.full((8, 8, 3), 2.0), {}, r"\[0, 1\]"),
    (np.full((8, 8, 3), np.nan), {}, "non-finite"),
    (np.zeros((2, 8, 3)), {}, "smaller than one 3x3 window"),
    (np.zeros((8, 8, 3)), {"eps": 0.0}, "eps"),
    (np.zeros((8, 8, 3)), {"win_rad": 0}, "win_rad"),
    ([[0.0]], {}, "tensor or a NumPy array"),
])
def test_laplacian_bad_input(image, kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        M.matting_laplacian(image, **kwargs)
    one_line(e)


# --------------------------------------------------------------------------- photorealism loss

def test_regularizer_value_and_gradient_equal_the_dense_quadratic_form():
    content = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    lap = M.MattingLaplacian(content)
    assert lap.shape == (7, 9)
    dense = torch.from_numpy(lap.matrix.toarray())
    x = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    xd = x.clone().requires_grad_(True)
    v = xd.reshape(2, 3, 63)
    ref = torch.einsum("bci,ij,bcj->b", v, dense, v)  # sum_c V_c^T M V_c
    ref.sum().backward()

    x32 = x.float().requires_grad_(True)
    out = lap.loss(x32)
    assert out.shape == (2,) and out.dtype == torch.float32
    out.sum().backward()
    torch.testing.assert_close(out.double(), ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x32.grad.double(), xd.grad, rtol=1e-5, atol=1e-5)
    # the backward scales by the incoming gradient per image
    x32.grad = None
    (lap.loss(x32) * torch.tensor([2.0, -1.0])).sum().backward()
    torch.testing.assert_close(x32.grad[0].double(), 2 * xd.grad[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x32.grad[1].double(), -xd.grad[1], rtol=1e-5, atol=1e-5)


def test_regularizer_passes_gradcheck_in_float64():
    lap = M.MattingLaplacian(picture(5, 6))
    x = torch.rand(1, 3, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    assert lap(x).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda t: lap(t), (x,), eps=1e-6, atol=1e-5)


def test_locally_affine_recolouring_costs_almost_nothing():
    content = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    lap = M.MattingLaplacian(content)
    recolour = 0.5 * content + 0.2                          # an affine map of the colours
    mix = torch.einsum("dc,bchw->bdhw", torch.tensor([[0.2, 0.5, 0.1], [0.3, 0.1, 0.4], [0.6, 0.2, 0.1]]), content)
    noise = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    shifted = torch.roll(content, 1, dims=-1)               # same colours, edges moved
    base = float(lap(noise)[0])
    assert base > 10
    assert float(lap(recolour)[0]) < 1e-5 * base
    assert float(lap(mix)[0]) < 1e-5 * base
    assert float(lap(content)[0]) < 1e-5 * base
    assert float(lap(shifted)[0]) > 0.1 * base


def test_photorealism_loss_entry_points_agree():
    content = picture(8, 8)
    lap = M.MattingLaplacian(content)
    x = stripes(8, 8)
    want = lap.loss(x)
    assert torch.equal(M.photorealism_loss(x, lap), want)
    assert torch.equal(lap.photorealism_loss(x), want)
    torch.testing.assert_close(M.photorealism_loss(x, lap.matrix), want)
    torch.testing.assert_close(lap(torch.cat([x, content]))[0], want[0])


def test_photorealism_loss_rejects_other_sizes():
    lap = M.MattingLaplacian(picture(8, 10))
    with pytest.raises(ValueError, match="10x8 px") as e:
        lap(torch.rand(1, 3, 10, 8))
    one_line(e)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        lap(torch.rand(3, 8, 10))
    with pytest.raises(ValueError, match="MattingLaplacian"):
        M.photorealism_loss(torch.rand(1, 3, 8, 10), np.eye(80))


# --------------------------------------------------------------------------- augmented style loss

def test_one_all_ones_region_is_the_plain_gram_style_loss(vgg19):
    content, style = picture(48, 64), stripes(48, 64)
    ones = torch.ones(1, 48, 64)
    targets = style_targets(vgg19, style, LAYERS, regions=ones)
    plain = style_targets(vgg19, style, LAYERS)
    masks = GD.region_layer_masks(ones, vgg19, LAYERS)
    noise = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    x = (0.3 * content + 0.7 * noise).requires_grad_(True)
    feats = vgg19.features(x, LAYERS)
    for layer in LAYERS:
        assert targets[layer].shape == (1, *plain[layer].shape) and targets[layer].dtype == torch.float32
        torch.testing.assert_close(targets[layer][0], plain[layer], rtol=1e-5, atol=1e-7)
        assert bool(targets[layer].flatten(1).abs().amax(1).gt(0).all())  # the one region is valid
        f = feats[layer]
        got = L.region_style_layer_loss(f, masks[layer], targets[layer])
        want = style_layer_loss(f, plain[layer])
        assert got.shape == (2,) and got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-9)
        g_got, = torch.autograd.grad(got.sum(), x, retain_graph=True)
        g_want, = torch.autograd.grad(want.sum(), x, retain_graph=True)
        torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-9)


def halves(h: int, w: int) -> torch.Tensor:
    m = torch.zeros(2, h, w)
    m[0, :, : w // 2] = 1
    m[1, :, w // 2:] = 1
    return m


def test_two_regions_each_target_is_the_gram_of_its_part(vgg19):
    style = stripes(48, 64) * torch.linspace(0.3, 1, 64)  # left and right halves differ
    masks = halves(48, 64)
    targets = style_targets(vgg19, style, LAYERS, regions=masks)
    layer_m = GD.region_layer_masks(masks, vgg19, LAYERS)
    feats = vgg19.features(style, LAYERS)
    for layer in LAYERS:
        for r in range(2):
            # the vectorized resampling is guided.layer_masks per region
            torch.testing.assert_close(layer_m[layer][r], layer_masks(masks[r], vgg19, [layer])[layer])
            torch.testing.assert_close(targets[layer][r], guided_gram(feats[layer], layer_m[layer][r])[0],
                                       rtol=1e-5, atol=1e-7)
    # at full resolution the masked Gram of a half is the normalized Gram of that half's features
    f = feats["relu1_1"]
    torch.testing.assert_close(targets["relu1_1"][0], gram_matrix(f[..., :32], normalize=True)[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(targets["relu1_1"][1], gram_matrix(f[..., 32:], normalize=True)[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(targets["relu1_1"][0], targets["relu1_1"][1], rtol=1e-2)


def test_region_loss_is_the_sum_of_per_region_gram_losses():
    gen = torch.Generator().manual_seed(5)
    f = torch.rand(2, 6, 8, 10, generator=gen)
    masks = halves(8, 10)
    targets = torch.rand(2, 6, 6, generator=gen)
    got = L.region_style_layer_loss(f, masks, targets)
    want = sum(((gram_matrix(part, normalize=True) - targets[r]) ** 2).sum((1, 2)) / (4 * 36)
               for r, part in enumerate((f[..., :5], f[..., 5:])))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # each region on its own gives its own term
    first = L.region_style_layer_loss(f, masks[:1], targets[:1])
    torch.testing.assert_close(first, ((gram_matrix(f[..., :5], normalize=True) - targets[0]) ** 2).sum((1, 2)) / 144)


def test_empty_regions_contribute_nothing():
    gen = torch.Generator().manual_seed(6)
    f = torch.rand(1, 4, 6, 6, generator=gen, requires_grad=True)
    masks = torch.zeros(3, 6, 6)
    masks[0, :, :3] = 1
    masks[1, :, 3:] = 1                       # region 2 is empty in the content at this layer
    targets = torch.rand(3, 4, 4, generator=gen)
    only0 = L.region_style_layer_loss(f, masks[:1], targets[:1])
    only1 = L.region_style_layer_loss(f, masks[1:2], targets[1:2])
    full = L.region_style_layer_loss(f, masks, targets)
    torch.testing.assert_close(full, only0 + only1)
    assert torch.isfinite(full).all()
    # a zero target marks a region empty in the style image: skipped
    t2 = targets.clone()
    t2[1] = 0
    torch.testing.assert_close(L.region_style_layer_loss(f, masks, t2), only0)
    # ... unless valid says otherwise, and valid can skip a region too
    torch.testing.assert_close(L.region_style_layer_loss(f, masks, t2, valid=torch.tensor([True, True, True])),
                               only0 + L.region_style_layer_loss(f, masks[1:2], torch.zeros(1, 4, 4),
                                                                 valid=torch.tensor([True])))
    torch.testing.assert_close(L.region_style_layer_loss(f, masks, targets, valid=torch.tensor([False, True, True])),
                               only1)
    g, = torch.autograd.grad(L.region_style_layer_loss(f, masks, t2).sum(), f)
    assert torch.isfinite(g).all() and g[..., :3].abs().sum() > 0 and g[..., 3:].abs().sum() == 0


def test_style_region_missing_at_a_layer_gets_a_zero_target(vgg19):
    masks = torch.zeros(2, 48, 64)
    masks[0] = 1
    targets = style_targets(vgg19, stripes(48, 64), ["relu1_1"], regions=masks)
    assert torch.count_nonzero(targets["relu1_1"][1]) == 0 and torch.count_nonzero(targets["relu1_1"][0]) > 0
    assert L.region_valid(GD.region_layer_masks(masks, vgg19, ["relu1_1"])["relu1_1"]).tolist() == [True, False]


def test_region_targets_are_a_plain_dict_whose_copies_keep_the_empty_regions_skipped(vgg19):
    """Region targets moved or copied the way runs do ({l: t.to(dev)}) lose nothing: an empty
    style region is marked by its all-zero target, which the loss skips."""
    masks = torch.zeros(2, 48, 64)
    masks[0] = 1
    targets = style_targets(vgg19, stripes(48, 64), ["relu1_1"], regions=masks)
    assert type(targets) is dict
    copied = {k: v.to("cpu").clone() for k, v in targets.items()}
    content_masks = GD.region_layer_masks(halves(48, 64), vgg19, ["relu1_1"])["relu1_1"]
    f = vgg19.features(picture(48, 64), ["relu1_1"])["relu1_1"]
    got = L.region_style_layer_loss(f, content_masks, copied["relu1_1"])
    only_first = L.region_style_layer_loss(f, content_masks[:1], copied["relu1_1"][:1])
    assert torch.equal(got, only_first) and float(got) > 0


def test_region_and_guided_targets_take_one_style_image_and_matching_masks(vgg19):
    a, b = stripes(48, 64), picture(48, 64)
    with pytest.raises(ValueError, match="one style image, not a blend"):
        style_targets(vgg19, [(a, 1.0), (b, 1.0)], ["relu1_1"], regions=torch.ones(1, 48, 64))
    with pytest.raises(ValueError, match="not both"):
        style_targets(vgg19, a, ["relu1_1"], regions=torch.ones(1, 48, 64), weight=torch.ones(48, 64))
    with pytest.raises(ValueError, match="style masks are 32x48 px but the style image is 64x48 px"):
        style_targets(vgg19, a, ["relu1_1"], regions=torch.ones(1, 48, 32))
    with pytest.raises(ValueError, match="does not match the style image"):
        style_targets(vgg19, a, ["relu1_1"], weight=torch.ones(48, 32))


def test_region_loss_shape_errors():
    f = torch.rand(1, 4, 6, 6)
    with pytest.raises(ValueError, match="do not match") as e:
        L.region_style_layer_loss(f, torch.ones(1, 5, 6), torch.zeros(1, 4, 4))
    one_line(e)
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        L.region_style_layer_loss(f, torch.ones(2, 6, 6), torch.zeros(1, 4, 4))


# --------------------------------------------------------------------------- colour masks

def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def painted(h: int = 48, w: int = 64) -> np.ndarray:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = RED
    a[:, w // 2:] = BLUE
    a[10:30, 40:56] = GREEN
    return a


def test_color_mask_regions_are_read_and_speckles_merged(tmp_path):
    a = painted()
    a[5, 3] = (250, 10, 5)     # antialias speckles next to red (well under 0.5 % each)
    a[6, 3] = (240, 0, 20)
    a[20, 60] = (5, 5, 230)    # ... and next to blue
    path = tmp_path / "content_mask.png"
    path.write_bytes(png(a))
    labels, colors = R.load_color_mask(path, (48, 64))
    assert labels.dtype == torch.long and labels.shape == (48, 64)
    assert sorted(colors) == sorted([RED, GREEN, BLUE])
    lut = np.asarray(colors)[labels.numpy()]
    want = painted()
    np.testing.assert_array_equal(lut, want)  # speckles now carry the colour of their region
    # a smaller working size: nearest-neighbour resampling, no new colours
    small, colors2 = R.load_color_mask(png(a), (24, 32), role="style mask")
    assert sorted(colors2) == sorted(colors)
    np.testing.assert_array_equal(np.asarray(colors2)[small.numpy()], want[::2, ::2])


def test_color_mask_with_another_aspect_ratio_is_refused():
    with pytest.raises(ValueError, match="64x48 px.*96x48 px") as e:
        R.load_color_mask(png(painted()), (48, 96))
    one_line(e)
    # 4 % off is accepted (resized)
    labels, _ = R.load_color_mask(png(painted()), (46, 64))
    assert labels.shape == (46, 64)


def test_color_mask_broken_file_is_a_one_line_image_error(tmp_path):
    bad = tmp_path / "mask.png"
    bad.write_bytes(png(painted())[:60])
    with pytest.raises(ImageError, match="style mask") as e:
        R.load_color_mask(bad, (48, 64), role="style mask")
    one_line(e)


def test_photo_instead_of_mask_is_refused():
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3))
    with pytest.raises(ValueError, match="flat colours") as e:
        R.load_color_mask(png(noise), (48, 64))
    one_line(e)


def test_match_regions_keeps_shared_colours_and_notes_the_rest():
    c_labels = torch.tensor([[0, 0, 1], [2, 2, 1]])
    s_labels = torch.tensor([[1, 1], [0, 2], [2, 2]])
    m = R.match_regions(c_labels, [RED, GREEN, BLUE], s_labels, [BLUE, YELLOW, RED])
    assert m.names == ["#ff0000", "#0000ff"] and m.colors == [RED, BLUE]
    assert m.content.dtype == torch.float32 and m.content.shape == (2, 2, 3) and m.style.shape == (2, 3, 2)
    assert m.content[0].tolist() == [[1, 1, 0], [0, 0, 0]]
    assert m.content[1].tolist() == [[0, 0, 0], [1, 1, 0]]
    assert m.style[0].tolist() == [[0, 0], [0, 1], [1, 1]]   # red in the style image
    assert m.style[1].tolist() == [[0, 0], [1, 0], [0, 0]]   # blue in the style image
    assert len(m.notes) == 2
    assert "#00ff00" in m.notes[0] and "only in the content mask" in m.notes[0] and "no style target" in m.notes[0]
    assert m.notes[1] == "region #ffff00 appears only in the style mask; ignored"


def test_match_regions_with_nothing_shared_is_refused():
    with pytest.raises(ValueError, match="^the content and style masks share no colour: .*#ff0000.*#0000ff") as e:
        R.match_regions(torch.zeros(3, 3, dtype=torch.long), [RED], torch.zeros(3, 3, dtype=torch.long), [BLUE])
    one_line(e)
    with pytest.raises(ValueError, match="labels must be in 0..0"):
        R.match_regions(torch.ones(3, 3, dtype=torch.long), [RED], torch.zeros(3, 3, dtype=torch.long), [RED])


def test_preview_images_show_each_region_in_its_colour():
    m = R.match_regions(torch.tensor([[0, 1], [0, 1]]), [RED, GREEN], torch.tensor([[0, 0, 0]]), [RED])
    c_img, s_img = m.preview_images()
    assert c_img.size == (2, 2) and s_img.size == (3, 1) and c_img.mode == "RGB"
    assert c_img.getpixel((0, 0)) == RED and c_img.getpixel((0, 1)) == RED
    assert c_img.getpixel((1, 0)) not in (RED, GREEN)   # green has no style target: checkerboard grey
    assert s_img.getpixel((2, 0)) == RED


# --------------------------------------------------------------------------- k-means masks

def two_colour(h: int, w: int, vertical: bool) -> torch.Tensor:
    img = torch.zeros(1, 3, h, w)
    if vertical:
        img[0, 0, :, : w // 2] = 1   # red left
        img[0, 2, :, w // 2:] = 1    # blue right
    else:
        img[0, 2, : h // 2] = 1      # blue top
        img[0, 0, h // 2:] = 1       # red bottom
    return img


def test_auto_masks_clusters_correspond_across_images():
    content, style = two_colour(32, 32, True), two_colour(24, 40, False)
    m = R.auto_masks(content, style, k=2)
    assert m.count == 2 and m.names == ["cluster 1", "cluster 2"] and not m.notes
    red_c = (m.content[:, :, 0] == 1).all(1)       # the region holding the content's red column
    assert red_c.sum() == 1
    r = int(torch.nonzero(red_c).flatten()[0])
    assert bool((m.content[r, :, :16] == 1).all()) and bool((m.content[r, :, 16:] == 0).all())
    assert bool((m.style[r, 12:] == 1).all()) and bool((m.style[r, :12] == 0).all())  # red is at the bottom
    assert m.content.sum(0).eq(1).all() and m.style.sum(0).eq(1).all()


def test_auto_masks_are_deterministic_under_a_seed():
    content, style = picture(32, 40), stripes(36, 36)
    a = R.auto_masks(content, style, k=4, seed=3)
    b = R.auto_masks(content, style, k=4, seed=3)
    assert a.names == b.names and torch.equal(a.content, b.content) and torch.equal(a.style, b.style)
    assert a.content.shape[1:] == (32, 40) and a.style.shape[1:] == (36, 36)


def test_auto_masks_with_fewer_colours_than_k_and_bad_k():
    m = R.auto_masks(two_colour(32, 32, True), two_colour(32, 32, False), k=5)
    assert m.count == 2 and any("2 distinct colours" in n for n in m.notes)
    for k in (1, 9, 2.5):
        with pytest.raises(ValueError, match="from 2 to 8") as e:
            R.auto_masks(picture(32, 32), stripes(32, 32), k=k)
        one_line(e)
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
        R.auto_masks(picture(32, 32)[0], stripes(32, 32), k=2)


# --------------------------------------------------------------------------- segmentation masks

def test_segmentation_masks_without_weights_is_a_weights_error(monkeypatch, tmp_path):
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("EXPLORER_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsError) as e:
        R.segmentation_masks(picture(64, 64), stripes(64, 64), device="cpu")
    msg = one_line(e)
    assert R.segmentation_weights_file() in msg and "EXPLORER_WEIGHTS_DIR" in msg and "EXPLORER_OFFLINE=1" in msg
    assert "\n" not in e.value.app_message


def test_segmentation_masks_refuse_a_file_that_is_not_deeplab(monkeypatch, tmp_path):
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(tmp_path))
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3)}, tmp_path / R.segmentation_weights_file())
    with pytest.raises(WeightsError, match="not a deeplabv3_resnet50 state_dict") as e:
        R.segmentation_masks(picture(64, 64), stripes(64, 64), device="cpu")
    one_line(e)


def test_segmentation_masks_run_with_a_weights_file(monkeypatch, tmp_path):
    """The loading path with a weights file the test writes (seeded random parameters: the
    labels mean nothing, only the plumbing is checked)."""
    from torchvision.models.segmentation import deeplabv3_resnet50

    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(tmp_path))
    torch.manual_seed(0)
    net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()},
               tmp_path / R.segmentation_weights_file())
    del net
    try:
        content = picture(48, 64)
        m = R.segmentation_masks(content, content.clone(), device="cpu", size=48)
        from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights as W

        names = ["background"] + W.COCO_WITH_VOC_LABELS_V1.meta["categories"][1:]
        assert m.count >= 1 and set(m.names) <= set(names) and not m.notes
        assert m.content.shape == (m.count, 48, 64) and torch.equal(m.content, m.style)
        assert m.content.sum(0).eq(1).all()   # every pixel has exactly one class, all shared
        assert m.colors[0] == R.voc_color(names.index(m.names[0]))
    finally:
        R.clear_segmentation_cache()


@pytest.mark.parametrize("channels_last", [False, True])
def test_region_plan_gives_the_same_loss_and_gradient_as_the_masks(channels_last):
    """The per-step fast path (products over each region's positions only) equals the masked
    products: fractional (area-averaged) masks, an empty region, both memory layouts."""
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(2, 6, 9, 11, generator=g)
    masks = torch.zeros(3, 9, 11)
    masks[0, :, :5] = 1.0
    masks[0, :, 5] = 0.25  # a fractional boundary column
    masks[1, :, 5:] = 1.0 - masks[0, :, 5:]
    # region 2 is empty at this layer
    targets = torch.rand(3, 6, 6, generator=g)
    x = feats.contiguous(memory_format=torch.channels_last) if channels_last else feats.clone()
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    slow = L.region_style_layer_loss(a, masks, targets)
    fast = L.region_style_layer_loss(b, masks, targets, plan=L.region_plan(masks))
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-7)
    slow.sum().backward()
    fast.sum().backward()
    assert torch.allclose(b.grad, a.grad, rtol=1e-4, atol=1e-8)
    assert float(a.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="2 regions for 3 masks"):
        L.region_style_layer_loss(b, masks, targets, plan=L.region_plan(masks[:2]))
