"""Streamlit AppTest of the Dataset augmentation page.

Headless, in-process, CPU, untrained weights (``EXPLORER_ALLOW_UNTRAINED=1`` ticks "Use
untrained weights"); a zip of two classes of 48 px images, 48 px working size, one Adam step.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer.io import images
from tests.helpers import app_env, picture, stripes
from tests.test_app import downloads  # noqa: F401  (fixture re-exported)

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/augment.py"


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)


@pytest.fixture
def page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def png(t) -> bytes:
    buf = io.BytesIO()
    images.to_pil(t).save(buf, "PNG")
    return buf.getvalue()


def dataset_zip(extra: dict[str, bytes] | None = None) -> bytes:
    """dataset/cats/{a,b}.png, dataset/dogs/c.png and a text file named like an image."""
    entries = {"dataset/cats/a.png": png(picture(48, 48)), "dataset/cats/b.png": png(picture(40, 48).flip(-1)),
               "dataset/dogs/c.png": png(0.3 + 0.5 * stripes(48, 48)), "dataset/dogs/bad.png": b"not an image",
               **(extra or {})}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def upload(at: AppTest, data: bytes) -> None:
    at.file_uploader(key="aug_zip").set_value(("dataset.zip", data, "application/zip")).run()
    assert not at.exception


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_page_augments_a_zip_and_offers_the_result_as_a_zip(page, downloads):
    assert page.button(key="aug_run").disabled  # nothing uploaded yet
    assert any("untrained weights" in w.value for w in page.warning)
    upload(page, dataset_zip())
    page.slider(key="aug_size").set_value((48, 48))
    page.slider(key="aug_steps").set_value((1, 1))
    page.number_input(key="aug_variants").set_value(2)
    page.number_input(key="aug_batch").set_value(2)
    page.multiselect(key="aug_traditional").set_value(["flip"])
    page.run()
    assert not errors(page) and not page.button(key="aug_run").disabled
    page.button(key="aug_run").click().run()
    assert not page.exception and not errors(page)

    assert "Result" in [s.value for s in page.subheader]
    captions = [c for img in page.image for c in img.captions]
    assert sum(c.startswith(("cats/", "dogs/")) for c in captions) == 6
    assert any("1 input file(s) skipped" in w.value for w in page.warning)
    assert "aug_download" in {d.key for d in page.download_button}

    blob = downloads["augmented.zip"]
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = set(zf.namelist())
        assert names == {"cats/a__v0.png", "cats/a__v1.png", "cats/b__v0.png", "cats/b__v1.png",
                         "dogs/c__v0.png", "dogs/c__v1.png", "manifest.csv", "skipped.csv"}
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
        assert sorted(r["output"] for r in rows) == sorted(n for n in names if n.endswith(".png"))
        assert {r["class"] for r in rows} == {"cats", "dogs"}
        assert all(r["styles"].startswith("sample:") and r["traditional"].startswith("flip=") for r in rows)
        skipped = list(csv.DictReader(io.StringIO(zf.read("skipped.csv").decode())))
        assert [r["path"] for r in skipped] == ["dogs/bad.png"] and "not an image" in skipped[0]["reason"]
        with Image.open(io.BytesIO(zf.read("cats/b__v0.png"))) as im:
            assert im.size == (48, 40) and "untrained" in im.text["weights"]


@pytest.mark.parametrize("data, message", [
    (b"this is not a zip", "not a zip file"),
    (dataset_zip({"../evil.png": b"x"}), "leaves its folder"),
])
def test_bad_zips_are_one_error_line_and_nothing_runs(page, data, message):
    upload(page, data)
    page.button(key="aug_run").click().run()
    assert not page.exception
    errs = errors(page)
    assert len(errs) == 1 and message in errs[0] and "\n" not in errs[0], errs
    assert "Result" not in [s.value for s in page.subheader]


def test_a_run_too_big_for_memory_is_one_error_line_before_any_image_is_decoded(page, monkeypatch):
    """The largest working size of the range, square, checked before the inputs are decoded or
    any style target is computed (it used to come after both, at the first batch)."""
    from explorer.batch import augment

    seen: list[str] = []
    load, targets = images.load_image, augment.style_targets
    monkeypatch.setattr(images, "load_image", lambda *a, **kw: seen.append("decode") or load(*a, **kw))
    monkeypatch.setattr(augment, "style_targets", lambda *a, **kw: seen.append("forward") or targets(*a, **kw))
    monkeypatch.setenv("EXPLORER_MEMORY_LIMIT", "1MB")
    upload(page, dataset_zip())
    page.slider(key="aug_size").set_value((48, 96))
    page.slider(key="aug_steps").set_value((1, 1))
    page.button(key="aug_run").click().run()
    assert not page.exception
    errs = errors(page)
    assert len(errs) == 1 and "a 96 px style transfer" in errs[0] and "needs about" in errs[0], errs
    assert seen == [] and "Result" not in [s.value for s in page.subheader]


def test_page_says_why_style_augmentation_helps_and_what_it_costs(page):
    text = " ".join(m.value for m in page.markdown)
    for phrase in ("Geirhos et al. 2019", "Stylized-ImageNet", "texture", "shape", "Jackson et al. 2019",
                   "*Style Augmentation: Data Augmentation via Style Randomization*", "The costs"):
        assert phrase in text, phrase
    assert "Why stylize a dataset, and what it costs" in [e.label for e in page.expander]
