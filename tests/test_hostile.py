"""What a careless or malicious user does: odd file names, two runs into one folder, recipes of
the wrong shape, special files, bad output paths, negative numbers, a network that never
answers, and a coarse-to-fine page run.

CPU, untrained VGG19 (the session fixture), 40-48 px images, 1 Adam step: the properties
(names, counts, one-line errors, no work before a refusal) do not depend on the picture.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import types
from pathlib import Path

import pytest
from PIL import Image

from explorer.batch import augment, augment_io, augment_plan
from explorer.cli import common as cmd_common
from explorer.dream import settings as dream_settings
from explorer.io import images
from explorer.nets import models
from explorer.style import transfer as style, settings as style_settings
from explorer.io import files
from explorer.nets import download, weights
from explorer.nets import registry
from tests.helpers import app_env, error_line, picture, run_cli, silent_server, stripes
from tests.test_augment import make_styles, run_all, settings

FORMULA_STARTS = ("=", "+", "-", "@")


def _png(path: Path, h: int = 44, w: int = 48, k: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = picture(h, w) if k % 2 == 0 else 0.3 + 0.5 * stripes(h, w)
    images.to_pil(t.roll(3 * k, dims=-1)).save(path, "PNG" if path.suffix.lower() != ".jpg" else "JPEG")


def _no_model(monkeypatch):
    """Any model load fails the test: the CLI must refuse before loading one."""
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(cmd_common, "load_net", refuse)


# ----------------------------------------------------------------------------- augment names

HOSTILE_NAMES = [
    "cats/b.png", "cats/b.jpg", "cats/b_png.jpg",          # 1: b.png -> b_png, and b_png.jpg is b_png too
    "cats/B.PNG.png",                                      # a case-only twin of b_png's folder mates
    "we\rird/x.png", "cats/car\rriage.png",                # 3: carriage returns in a class and a file name
    "cats/" + "l" * 240 + ".png",                          # 3: the hidden temp name would pass 255 bytes
    "=HYPERLINK(\"http:x\")/+f.png", "@SUM(1)/-g.png",     # 5: spreadsheet formulas
    "dogs/ok.png",
]
NON_UTF8 = b"cats/bad-\xff\xfe.png"                        # 3: a name that is not UTF-8


def _hostile_dataset(root: Path) -> list[str]:
    for k, name in enumerate(HOSTILE_NAMES):
        _png(root / name, k=k)
    raw = os.fsencode(root) + b"/" + NON_UTF8
    buf = io.BytesIO()
    images.to_pil(picture(44, 48)).save(buf, "PNG")
    with open(raw, "wb") as fh:
        fh.write(buf.getvalue())
    return augment_io.list_inputs(root)


def test_final_output_names_never_collide():
    """Two uploads, cats/b.png and cats/b_png.jpg, both became cats/b_png__v0.png."""
    inputs = ["cats/b.png", "cats/b.jpg", "cats/b_png.jpg", "cats/B_PNG.jpeg", "dogs/b.png", "a.png"]
    stems = augment_plan.output_stems(inputs)
    finals = [stems[p].casefold() for p in inputs]
    assert len(set(finals)) == len(inputs), stems
    assert stems["dogs/b.png"] == "dogs/b" and stems["a.png"] == "a"  # no collision, no change
    assert augment_plan.output_stems(inputs) == stems  # deterministic: every shard agrees
    long = "cats/" + "x" * 250 + ".png"
    assert len(augment_plan.output_stems([long])[long].split("/")[-1].encode()) <= augment_plan.MAX_STEM_BYTES


def test_every_hostile_name_is_stylized_or_skipped_and_the_manifest_names_real_files(vgg19, tmp_path):
    """The end-to-end proof: outputs + skipped == inputs, every manifest row names an existing,
    decodable file, and no cell of either CSV starts like a formula."""
    src, out = tmp_path / "in", tmp_path / "out"
    inputs = _hostile_dataset(src)
    assert len(inputs) == len(HOSTILE_NAMES) + 1
    styles = make_styles(tmp_path / "styles")
    run, _ = run_all(vgg19, src, styles, out, settings(variants=1))
    rows = augment_io.read_csv(out / "manifest.csv", augment_io.MANIFEST_COLUMNS)
    sources = {r["source"] for r in rows}
    skipped = {r["path"] for r in augment_io.read_csv(out / "skipped.csv", augment_io.SKIPPED_COLUMNS)}
    shown = {augment_plan.shown_name(p) for p in inputs}
    assert sources | skipped == shown and not sources & skipped
    assert len(sources) == len(HOSTILE_NAMES)  # only the non-UTF-8 name is skipped
    assert [augment_plan.shown_name(os.fsdecode(NON_UTF8))] == sorted(skipped)
    outputs = [r["output"] for r in rows]
    assert len(set(outputs)) == len(outputs) == len(HOSTILE_NAMES)
    for r in rows:
        with Image.open(out / r["output"]) as im:
            im.load()
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == sorted(outputs)  # nothing written twice or left unlisted
    assert {r["class"] for r in rows} >= {"we\rird", "=HYPERLINK(\"http:x\")", "@SUM(1)"}
    for name in ("manifest.csv", "skipped.csv"):
        with open(out / name, encoding="utf-8", newline="") as fh:
            for row in csv.reader(fh):
                assert not any(cell.startswith(FORMULA_STARTS) for cell in row), row
    # a rerun finds everything done: nothing recomputed, nothing lost
    again, _ = run_all(vgg19, src, styles, out, settings(variants=1))
    assert again.summary()["written"] == 0
    assert len(augment_io.read_csv(out / "manifest.csv", augment_io.MANIFEST_COLUMNS)) == len(HOSTILE_NAMES)


def test_a_second_writer_is_refused_in_one_line(vgg19, tmp_path, capsys, monkeypatch):
    """Two runs into one folder overwrote each other; now the second is refused before
    any model is loaded, and the lock goes with the process (no stale lock after it ends)."""
    src, styles, out = tmp_path / "in", make_styles(tmp_path / "styles"), tmp_path / "out"
    _png(src / "cats" / "a.png")
    held = augment_io.ShardLock(out, augment_plan.Shard()).acquire()
    try:
        _no_model(monkeypatch)
        rc, _, err = run_cli(capsys, "augment", src, styles, "-o", out, "--variants", "1", "--untrained")
        assert rc == 2 and "another augment run is writing" in error_line(err)
        with pytest.raises(augment_io.AugmentError, match="another augment run"):
            list(augment.Augmentation(vgg19, src, augment_io.load_styles(styles), out, settings(variants=1)))
        # a shard of another plan would number the inputs another way: refused too (shards of
        # one plan running side by side: tests/test_augment_folder.py)
        with pytest.raises(augment_io.AugmentError, match="a plain run"):
            augment_io.ShardLock(out, augment_plan.Shard(1, 2)).acquire()
    finally:
        held.release()
    run, _ = run_all(vgg19, src, styles, out, settings(variants=1))
    assert run.summary()["written"] == 1


def test_shard_logs_are_appended_not_truncated(vgg19, tmp_path):
    """A restarted shard keeps the earlier run's log rows (opened for appending)."""
    src, styles, out = tmp_path / "in", make_styles(tmp_path / "styles"), tmp_path / "out"
    for k, name in enumerate(["cats/a.png", "cats/b.png"]):
        _png(src / name, k=k)
    run_all(vgg19, src, styles, out, settings(variants=1))
    log = out / "manifest.shard-0-of-1.csv"
    before = log.read_bytes()
    (src / "cats" / "c.png").write_bytes((src / "cats" / "a.png").read_bytes())
    run_all(vgg19, src, styles, out, settings(variants=1))
    assert log.read_bytes().startswith(before)
    assert len(augment_io.read_manifest(out)) == 3


def test_output_folder_may_not_be_the_styles_folder_and_broken_styles_are_skipped(vgg19, tmp_path, capsys,
                                                                                  monkeypatch):
    src, styles = tmp_path / "in", make_styles(tmp_path / "styles")
    _png(src / "cats" / "a.png")
    _no_model(monkeypatch)
    for out in (styles, styles / "out"):
        rc, _, err = run_cli(capsys, "augment", src, styles, "-o", out, "--variants", "1", "--untrained")
        assert rc == 2 and "styles folder" in error_line(err)
    (styles / "broken.png").write_text("not a picture")
    notes: list[str] = []
    loaded = augment_io.load_styles(styles, notes)
    assert [s.name for s in loaded] == ["disc.png", "stripes.png"]
    assert len(notes) == 1 and "broken.png" in notes[0] and "left out" in notes[0]
    for good in ("disc.png", "stripes.png"):
        (styles / good).unlink()
    with pytest.raises(augment_io.AugmentError, match="no usable style images"):
        augment_io.load_styles(styles)


def test_formula_cells_are_neutralized_and_read_back_exactly():
    """OWASP's CSV injection rule: a leading quote on write, removed on read."""
    for text in ("=HYPERLINK(\"x\")", "+1", "-2", "@A1", "'quoted", "plain", "\tTab"):
        cell = augment_io.cell_out(text)
        assert not cell.startswith(FORMULA_STARTS)
        assert augment_io.cell_in(cell) == text


# ----------------------------------------------------------------------------- one line, exit 2

@pytest.mark.parametrize("recipe, words", [
    ({"settings": None}, "'settings' must be a JSON object, got null"),
    ({"settings": 5}, "'settings' must be a JSON object, got a number"),
    ({"settings": "size"}, "'settings' must be a JSON object, got a string"),
    ({"settings": {"style_layers": [1, 2]}}, "style_layers"),
    ({"settings": {"style_layers": "relu1_1,relu1_1"}}, "twice"),
    ({"settings": {"style_layer_weights": [[1]]}}, "style_layer_weights"),
    ({"settings": {"size": "big"}}, "size must be a whole number"),
    ({"settings": {"content_layer": ["relu4_2"]}}, "content_layer must be a name"),
    ({"inputs": {"content": 3}}, "inputs.content"),
    ([1, 2], "must hold a JSON object"),
])
def test_recipes_of_the_wrong_shape_give_one_line_before_any_model(tmp_path, capsys, monkeypatch, recipe, words):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    _no_model(monkeypatch)
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:coffee", "-o", tmp_path / "o.png",
                         "--recipe", path, "--untrained")
    assert rc == 2 and words in error_line(err)


@pytest.mark.parametrize("command, recipe, words", [
    (["dream", "gray"], {"settings": {"layers": [["inception4c", "1"]]}}, "layers must be"),
    (["dream", "gray"], {"settings": {"channels": [1.5]}}, "channels must be whole numbers"),
    (["saliency", "sample:coffee"], {"settings": {"style_layers": {"a": 1}}}, "style_layers"),
    (["augment", "IN", "STYLES", "--variants", "1"], {"settings": None}, "'settings' must be a JSON object"),
])
def test_every_command_checks_its_recipe_before_any_model(tmp_path, capsys, monkeypatch, command, recipe, words):
    """The same for the other commands that take --recipe."""
    src, styles = tmp_path / "in", make_styles(tmp_path / "styles")
    _png(src / "cats" / "a.png")
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    _no_model(monkeypatch)
    args = [str(src) if a == "IN" else str(styles) if a == "STYLES" else a for a in command]
    out = tmp_path / ("out" if command[0] == "augment" else "o.png")
    rc, _, err = run_cli(capsys, *args, "-o", out, "--recipe", path, "--untrained")
    assert rc == 2 and words in error_line(err)


def test_saliency_replays_its_recipe(tmp_path, capsys):
    """``saliency --recipe`` was accepted and ignored; flags still override the recipe."""
    report = tmp_path / "r.json"
    rc, _, _ = run_cli(capsys, "saliency", "sample:coffee", "-o", tmp_path / "a.png", "--size", "48",
                       "--method", "gradcam", "--report", report, "--untrained", "--quiet")
    assert rc == 0
    rc, _, _ = run_cli(capsys, "saliency", "sample:coffee", "-o", tmp_path / "b.png", "--recipe", report,
                       "--report", tmp_path / "b.json", "--untrained", "--quiet")
    assert rc == 0
    again = json.loads((tmp_path / "b.json").read_text())
    assert again["method"] == "gradcam" and again["settings"]["size"] == 48
    rc, _, _ = run_cli(capsys, "saliency", "sample:coffee", "-o", tmp_path / "c.png", "--recipe", report,
                       "--size", "56", "--report", tmp_path / "c.json", "--untrained", "--quiet")
    assert rc == 0 and json.loads((tmp_path / "c.json").read_text())["settings"]["size"] == 56


def test_a_deeply_nested_or_huge_recipe_gives_one_line(tmp_path, capsys, monkeypatch):
    """200,000 levels of nesting made json raise RecursionError."""
    _no_model(monkeypatch)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:coffee", "-o", tmp_path / "o.png",
                         "--recipe", deep, "--untrained")
    assert rc == 2 and "nested too deeply" in error_line(err)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as fh:
        fh.truncate(cmd_common.MAX_RECIPE_BYTES + 1)
    rc, _, err = run_cli(capsys, "dream", "gray", "-o", tmp_path / "o.png", "--recipe", huge, "--untrained")
    assert rc == 2 and "MB" in error_line(err)


@pytest.mark.parametrize("layers, words", [
    ("inception4c:nan", "finite"), ("inception4c:1e400", "finite"), ("", "at least one layer"),
    ("inception4c,inception4c:2", "twice"), (",", "at least one layer")])
def test_dream_layer_weights_must_be_finite_and_present(tmp_path, capsys, monkeypatch, layers, words):
    """NaN and 1e400 gave an all-black PNG with exit 0; "" fell back to the default."""
    _no_model(monkeypatch)
    rc, _, err = run_cli(capsys, "dream", "gray", "-o", tmp_path / "o.png", "--layers", layers, "--untrained")
    assert rc == 2 and words in error_line(err)
    with pytest.raises(ValueError, match=words):
        dream_settings.DreamSettings(layers=layers)
    assert not (tmp_path / "o.png").exists()


def test_special_files_are_refused_at_once(tmp_path, capsys, monkeypatch):
    """/dev/zero read until memory ran out and a named pipe hung."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    _no_model(monkeypatch)
    for path, kind in (("/dev/zero", "a device"), (str(fifo), "a named pipe")):
        rc, _, err = run_cli(capsys, "stylize", path, "sample:coffee", "-o", tmp_path / "o.png", "--untrained")
        assert rc == 2 and kind in error_line(err)
        with pytest.raises(images.ImageError, match=kind):
            images.load_image(path)
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:
        fh.truncate(files.MAX_FILE_BYTES + 1)
    with pytest.raises(images.ImageError, match="MB"):
        images.load_image(big)
    with pytest.raises(ValueError, match="MB"):
        files.read_regular_file(big, "x", limit=1000)


def test_weights_that_are_not_regular_files_say_what_they_are(tmp_path, capsys):
    """`--weights /dev/zero` and `--weights FOLDER` said "not found"; a named pipe must not hang."""
    fifo = tmp_path / "w.pth"
    os.mkfifo(fifo)
    out = tmp_path / "o.png"
    for path, kind in (("/dev/zero", "a device, not a regular file"), (str(fifo), "a named pipe, not a regular file"),
                       (str(tmp_path), "a folder, not a file")):
        rc, _, err = run_cli(capsys, "dream", "gray", "-o", out, "--model", "mobilenet_v2", "--weights", path,
                             "--size", "64", "--quiet")
        assert rc == 2 and error_line(err) == f"error: weights file {path}: this is {kind}"
        assert weights.weights_file_problem(path) == f"this is {kind}"
    assert not out.exists()


def test_layer_lists_longer_than_the_network_or_with_duplicates_are_refused():
    """A list of 2,000,000 style layers ran for minutes."""
    n = len(models.list_layers("vgg19"))
    with pytest.raises(ValueError, match=f"there are only {n}"):
        style_settings.StyleSettings(style_layers=",".join(["relu1_1"] * 2_000_000))
    with pytest.raises(ValueError, match="twice"):
        style_settings.StyleSettings(style_layers="relu1_1,relu2_1,relu1_1")


def test_output_paths_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    """`-o /etc/passwd/x.png` and `--report DIR` failed only after the computation."""
    _no_model(monkeypatch)
    afile = tmp_path / "a-file"
    afile.write_text("x")
    cases = [
        (["stylize", "sample:astronaut", "sample:coffee", "-o", afile / "x.png"], "is a file, not a folder"),
        (["stylize", "sample:astronaut", "sample:coffee", "-o", tmp_path / "o.png", "--report", tmp_path],
         "--report"),
        (["dream", "gray", "-o", tmp_path], "this is a folder"),
        (["activations", "sample:astronaut", "-o", afile / "g.png"], "is a file"),
        (["saliency", "sample:astronaut", "-o", tmp_path / "h.png", "--npy", afile / "h.npy"], "--npy"),
        (["augment", tmp_path, tmp_path, "-o", afile, "--variants", "1"], "this is a file, not a folder"),
    ]
    for args, words in cases:
        rc, _, err = run_cli(capsys, *args, "--untrained")
        assert rc == 2 and words in error_line(err), args
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(0o500)
        rc, _, err = run_cli(capsys, "dream", "gray", "-o", ro / "o.png", "--untrained")
        assert rc == 2 and "permission denied" in error_line(err)


def test_negative_numbers_reach_the_checks_that_explain_them(tmp_path, capsys, monkeypatch):
    """`--weight-range -1,1` and `--shard -1/2` were read as unknown flags."""
    src, styles = tmp_path / "in", make_styles(tmp_path / "styles")
    _png(src / "cats" / "a.png")
    _no_model(monkeypatch)
    base = ["augment", src, styles, "-o", tmp_path / "out", "--variants", "1", "--untrained"]
    rc, _, err = run_cli(capsys, *base, "--weight-range", "-1,1")
    assert rc == 2 and "blend weight must be >= 0" in error_line(err)
    rc, _, err = run_cli(capsys, *base, "--shard", "-1/2")
    assert rc == 2 and "shard" in error_line(err)
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:coffee", "-o", tmp_path / "o.png",
                         "--style-weight", "-5", "--untrained")
    assert rc == 2 and "style_weight must be >= 0" in error_line(err)


# ----------------------------------------------------------------------------- downloads

@pytest.fixture
def silent():
    with silent_server() as address:
        yield address


def test_a_download_that_gets_no_answer_gives_up_in_one_line(silent, tmp_path):
    """The download waited forever."""
    url = f"http://{silent}/vgg19-dcbb9e9d.pth"
    with pytest.raises(OSError, match=r"no answer from 127\.0\.0\.1:\d+ within 0\.5 s"):
        download.download_file(url, tmp_path, progress=False, timeout=0.5)
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_the_cli_says_the_way_forward_when_the_download_hangs(silent, tmp_path, capsys, monkeypatch):
    """The download, as a user meets it: a model load that needs a download, behind that network."""
    spec = registry.MODELS["vgg19"]
    fake = types.SimpleNamespace(url=f"http://{silent}/vgg19-dcbb9e9d.pth", meta=spec.weights_enum.meta)
    monkeypatch.setitem(registry.MODELS, "vgg19", dataclasses.replace(spec, weights_enum=fake))
    monkeypatch.delenv("EXPLORER_OFFLINE", raising=False)
    monkeypatch.setenv("EXPLORER_DOWNLOAD_TIMEOUT", "0.5")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:coffee", "-o", tmp_path / "o.png",
                         "--size", "64", "--steps", "1")
    line = error_line(err)
    assert rc == 2 and "no answer" in line and "EXPLORER_WEIGHTS_DIR" in line and "untrained" in line
    monkeypatch.setenv("EXPLORER_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(weights.WeightsError, match="EXPLORER_DOWNLOAD_TIMEOUT"):
        models.load_model("vgg19")


# ----------------------------------------------------------------------------- the style page

def test_chart_keys_stay_unique_when_steps_repeat(monkeypatch, tmp_path):
    """Coarse-to-fine restarts the step count at each scale; the live chart's key was
    the step number, so the second scale crashed with StreamlitDuplicateElementKey."""
    from streamlit.testing.v1 import AppTest

    app_env(monkeypatch, tmp_path)

    def script():
        import torch

        from explorer.app import ui
        from explorer.core.progress import ProgressEvent

        img = torch.zeros(1, 3, 8, 8)
        events = [ProgressEvent(s, 6, 0.1 * s, {"content": 1.0, "style": 1.0, "total": 2.0}, preview=img, done=True)
                  for s in (0, 3, 3, 6)]  # scale 1 ends at step 3, scale 2 starts there
        ui.run_events(events, state_key="t")

    at = AppTest.from_function(script, default_timeout=60).run()
    assert not at.exception, at.exception


def test_a_first_scale_refused_for_memory_gives_one_line_and_the_next_run_works(monkeypatch, tmp_path):
    """``ValueError: the run has not started`` leaked as a traceback."""
    from explorer.nets import memory
    from tests.test_app import ROOT, STYLE_PAGE, click_run, errors, small_settings
    from streamlit.testing.v1 import AppTest

    app_env(monkeypatch, tmp_path)
    refuse = {"on": True}
    real_check = style.check_style_memory

    def check(*a, **k):
        if refuse["on"]:
            raise memory.MemoryEstimateError("a 64 px style transfer needs about 9 GB of memory; try a smaller size")
        return real_check(*a, **k)

    monkeypatch.setattr(style, "check_style_memory", check)  # the per-scale check, after the run's own
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page(STYLE_PAGE).run()
    small_settings(at)
    at.run()
    click_run(at)
    errs = errors(at)
    assert len(errs) == 1 and "needs about 9 GB" in errs[0]
    assert "Result" not in [s.value for s in at.subheader]
    refuse["on"] = False
    click_run(at)
    assert not errors(at) and "Result" in [s.value for s in at.subheader]
