"""The style page's "Colours, scales and photorealism" controls (AppTest, untrained VGG19, 64 px)."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from explorer.style import transfer as style
from explorer.style import settings as style_settings
from tests.test_app import STYLE_PAGE, check_result, click_run, downloads, errors, home, page  # noqa: F401
from tests.test_app import _env, small_settings  # noqa: F401


def _two_colour_png(w: int, h: int, left=(255, 0, 0), right=(0, 0, 255)) -> bytes:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = left
    a[:, w // 2:] = right
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def _astronaut_and_hubble(page) -> None:
    """The samples these tests' sizes are chosen for (the page opens on chelsea + immunohistochemistry)."""
    page.selectbox(key="content_sample").set_value("astronaut")
    page.selectbox(key="style_sample").set_value("hubble deep field")


def test_luminance_and_coarse_to_fine_on_the_page(page, downloads):  # noqa: F811
    _astronaut_and_hubble(page)
    small_settings(page)
    page.radio(key="preserve_color").set_value("luminance")
    page.number_input(key="scales").set_value(2).run()  # enables the scale sliders
    page.slider(key="start_size").set_value(48)  # hubble_deep_field (1000x872) needs >= 37 px
    page.run()
    click_run(page)
    check_result(page)
    png = Image.open(io.BytesIO(downloads["stylized.png"]))
    assert max(png.size) == 64  # the final scale's size, not the first one's
    report = json.loads(downloads["recipe.json"])
    assert report["settings"]["preserve_color"] == "luminance"
    assert [s["size"] for s in report["scales"]] == [48, 64]
    assert report["history"][-1]["step"] == 3 + 3  # 3 steps at 48 px; no scale runs fewer than that (or 10)


def test_colour_options_say_what_they_recolour_and_linear_runs(page, downloads):  # noqa: F811
    radio = page.radio(key="preserve_color")
    assert list(radio.options) == ["No (colours from the style)", "Luminance-only transfer",
                                   "Recolour the style: content's channel histograms",
                                   "Recolour the style: content's mean and covariance"]
    text = " ".join(m.value for m in page.markdown)
    assert "Gatys et al. 2017's transform (sec. 5.2)" in text and "symmetric roots" in text
    small_settings(page)
    radio.set_value("linear")
    page.run()
    click_run(page)
    check_result(page)
    assert json.loads(downloads["recipe.json"])["settings"]["preserve_color"] == "linear"


def test_photorealistic_mode_with_automatic_regions(page, downloads):  # noqa: F811
    small_settings(page)
    page.toggle(key="photo").set_value(True)
    page.selectbox(key="masks").set_value("auto").run()  # enables k
    page.slider(key="mask_k").set_value(2)
    page.run()
    click_run(page)
    check_result(page)
    captions = [c for img in page.image for c in img.captions]
    assert "Content regions" in captions and "Style regions (same colour = matched)" in captions
    final = [c.value for c in page.caption if "Final losses" in c.value][0]
    assert "L_m" in final and "λ·L_m" in final
    report = json.loads(downloads["recipe.json"])
    assert report["settings"]["photo_lambda"] == style_settings.DEFAULT_PHOTO_LAMBDA and report["settings"]["masks"] == "auto"
    assert report["regions"] and report["history"][-1]["photo"] >= 0


def test_mask_uploads_bad_then_good(page):  # noqa: F811
    _astronaut_and_hubble(page)
    small_settings(page)
    page.selectbox(key="masks").set_value("files")
    page.run()
    # the content sample (astronaut) is square; a 3:1 mask is refused in one line
    page.file_uploader(key="content_mask_upload").set_value(("c.png", _two_colour_png(96, 32), "image/png"))
    # the style sample (hubble_deep_field) is 1000x872 px
    page.file_uploader(key="style_mask_upload").set_value(("s.png", _two_colour_png(64, 56), "image/png"))
    page.run()
    click_run(page)
    errs = errors(page)
    assert len(errs) == 1 and "\n" not in errs[0] and "mask" in errs[0]
    assert "Result" not in [s.value for s in page.subheader]
    # the next valid upload works in the same session
    page.file_uploader(key="content_mask_upload").set_value(("c.png", _two_colour_png(64, 64), "image/png"))
    page.run()
    click_run(page)
    check_result(page)
    assert not errors(page)


def test_the_58_is_called_an_input_scale_ratio_and_an_estimate_for_activations(page):  # noqa: F811
    text = " ".join(m.value for m in page.markdown)
    assert "takes its input about 58 times larger than torchvision's, 255 × std" in text
    assert "only estimated" in text and "activations are about 58 times" not in text
