"""Dataset augmentation (explorer.batch.augment and ``python -m explorer augment``).

CPU, untrained VGG19 (the session fixture), tiny datasets made here: two classes, 40-48 px
images, 48 px working size, 1-2 Adam steps, batch size 2. The properties checked (class layout,
manifest, determinism, resuming, skipping bad files, shards, atomic writes) do not depend on
whether the stylization looks good, so one or two steps are enough.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.core.recipes import migrate
from explorer.batch import augment, augment_io, augment_plan
from explorer.io import archives
from explorer.cli import parser as cli
from explorer.style import color
from explorer.io import images
from explorer.batch.augment import Augmentation
from explorer.batch.augment_plan import Shard
from explorer.batch.augment_settings import AugmentSettings
from explorer.core.runs import Run
from tests.helpers import error_line, picture, run_cli, stripes

GOOD = ["cats/a.png", "cats/b.jpg", "dogs/c.png", "dogs/d.png", "dogs/e.png"]
SHAPES = {"cats/a.png": (40, 48), "cats/b.jpg": (48, 40), "dogs/c.png": (48, 48), "dogs/d.png": (40, 48),
          "dogs/e.png": (44, 48)}  # (h, w)


def _pil(t: torch.Tensor) -> Image.Image:
    return images.to_pil(t)


def make_dataset(root: Path) -> Path:
    for i, (rel, (h, w)) in enumerate(SHAPES.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        t = picture(h, w) if i % 2 == 0 else 0.3 + 0.5 * stripes(h, w)
        _pil(t.roll(3 * i, dims=-1)).save(p)
    return root


def make_styles(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _pil(stripes(48, 48)).save(root / "stripes.png")
    _pil(picture(48, 40).flip(-1)).save(root / "disc.png")
    return root


def add_bad_files(root: Path) -> dict[str, str]:
    """A truncated PNG, a text file named .png, a too-small image and a non-image name;
    returns path -> a word its skip reason must contain."""
    buf = io.BytesIO()
    _pil(picture(48, 48)).save(buf, "PNG")
    (root / "cats" / "broken.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "dogs" / "text.png").write_text("not a picture at all")
    _pil(picture(20, 20)).save(root / "dogs" / "tiny.png")
    (root / "cats" / "notes.txt").write_text("labels")
    return {"cats/broken.png": "corrupt", "dogs/text.png": "not an image", "dogs/tiny.png": "too small",
            "cats/notes.txt": "not an image file name"}


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "in"), make_styles(tmp_path / "styles")


def settings(**kw) -> AugmentSettings:
    base = dict(variants=2, batch_size=2, steps=1, size=48, beta_range=(1e4, 1e6), seed=7)
    return AugmentSettings(**{**base, **kw})


def run_all(model, input_dir, styles_dir, out, s=None, shard=Shard()):
    run = Augmentation(model, input_dir, augment_io.load_styles(styles_dir), out, s or settings(), shard=shard)
    events = list(run)
    return run, events


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def outputs(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*.png")}


def expected_outputs(sources=GOOD, variants=2) -> set[str]:
    stems = {s: s.rsplit(".", 1)[0] for s in sources}
    return {f"{stems[s]}__v{k}.png" for s in sources for k in range(variants)}


# --------------------------------------------------------------------------- layout and manifest


def test_outputs_keep_the_class_folders_and_the_manifest_lists_every_output(vgg19, data, tmp_path):
    input_dir, styles_dir = data
    out = tmp_path / "out"
    run, events = run_all(vgg19, input_dir, styles_dir, out)
    assert outputs(out) == expected_outputs()
    assert {p.name for p in out.iterdir() if p.is_dir()} == {"cats", "dogs"}
    # the Run contract: result() is the rows written, report() the summary
    assert isinstance(run, Run) and run.notes == [] and run.stopped is None
    assert run.result() == run.written and len(run.result()) == 10 and run.report() == run.summary()

    rows = read_rows(out / "manifest.csv")
    assert list(rows[0]) == list(augment_io.MANIFEST_COLUMNS)
    assert sorted(r["output"] for r in rows) == sorted(expected_outputs())
    plan = {j.output: j for j in augment_plan.plan_jobs(augment_io.list_inputs(input_dir), 2, run.settings)}
    style_names = ["disc.png", "stripes.png"]  # sorted
    for r in rows:
        job = plan[r["output"]]
        assert r["source"] == job.source and r["class"] == job.source.split("/")[0]
        assert int(r["variant"]) == job.variant and r["output"].endswith(f"__v{job.variant}.png")
        assert r["styles"] == style_names[job.styles[0]]
        assert float(r["style_weights"]) == 1.0
        assert float(r["beta"]) == job.beta and 1e4 <= job.beta <= 1e6
        assert int(r["steps"]) == 1 and int(r["size"]) == 48 and int(r["seed"]) == 7
        assert int(r["job_seed"]) == job.seed and int(r["batch"]) in (1, 2)
        assert "untrained" in r["weights"] and len(r["job"]) == 12
        with Image.open(out / r["output"]) as im:
            assert im.size == (int(r["width"]), int(r["height"])) and max(im.size) == 48
            assert "untrained" in im.text["weights"]
        c, s_, total = float(r["content_loss"]), float(r["style_loss"]), float(r["total_loss"])
        assert all(math.isfinite(v) for v in (c, s_, total)) and float(r["seconds"]) >= 0
        # alpha = 1, beta = the job's style weight, no TV: the total is eq. (7) of the recorded terms
        assert total == pytest.approx(c + job.beta * s_, rel=1e-3)
    # both style images are used across 10 outputs, and each image's variants differ
    assert {r["styles"] for r in rows} == set(style_names)
    assert read_rows(out / "skipped.csv") == []
    # progress: images done out of this run's total, with rate and ETA; previews of finished batches
    assert events[-1].done and events[-1].step == events[-1].total == 10
    assert any("images/min" in (e.stage or "") and "ETA" in (e.stage or "") for e in events)
    assert sum(e.preview is not None for e in events) == 5  # one per batch: each image's 2 variants
    assert run.summary()["written"] == 10


def test_traditional_after_is_applied_to_the_stylized_image(vgg19, data, tmp_path):
    """The same jobs with flip applied after stylization give exactly the mirrored images of
    the plain run where the draw says flip=yes, and the same images where it says no."""
    input_dir, styles_dir = data
    plain, flipped = tmp_path / "plain", tmp_path / "flipped"
    run_all(vgg19, input_dir, styles_dir, plain, settings(variants=1))
    run_all(vgg19, input_dir, styles_dir, flipped, settings(variants=1, traditional="flip", traditional_at="after"))
    rows = {r["output"]: r for r in read_rows(flipped / "manifest.csv")}
    assert {r["traditional"] for r in rows.values()} <= {"flip=yes", "flip=no"}
    for name, r in rows.items():
        a = torch.from_numpy(np.array(Image.open(plain / name)))
        b = torch.from_numpy(np.array(Image.open(flipped / name)))
        assert torch.equal(a.flip(1) if r["traditional"] == "flip=yes" else a, b), name


def test_apply_traditional_keeps_the_shape_and_describes_what_it_did():
    x = picture(40, 48)
    job = augment_plan.Job("c/x.png", "c", 0, "c/x__v0.png", (0,), (1.0,), 1.0, 1, 48, 0,
                           flip=True, crop=(0.6, 1.2, 0.5, 0.0), jitter=(1.2, 0.8, 1.1, 0.02))
    y, how = augment_plan.apply_traditional(x, job)
    assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
    flip, crop, jitter = how.split(";")
    assert flip == "flip=yes" and jitter == "jitter=1.2,0.8,1.1,+0.02"
    top, left, h, w = (int(v) for v in crop[len("crop="):].split(","))
    assert top == 0 and 0 < h <= 40 and 0 < w <= 48 and h * w == pytest.approx(0.6 * 40 * 48, rel=0.1)
    only_flip = augment_plan.Job(**{**job.__dict__, "crop": None, "jitter": None})
    y, how = augment_plan.apply_traditional(x, only_flip)
    assert how == "flip=yes" and torch.equal(y, x.flip(-1))


# --------------------------------------------------------------------------- determinism


def _manifest_without_seconds(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_rows(path)]


def test_same_seed_gives_identical_images_and_manifest(vgg19, data, tmp_path):
    """With blends, traditional augmentation and a steps range drawn per output."""
    input_dir, styles_dir = data
    s = dict(traditional="flip,crop,jitter", steps=(1, 2), blend=2, weight_range=(0.1, 1.0), variants=1)
    run_all(vgg19, input_dir, styles_dir, tmp_path / "one", settings(**s))
    run_all(vgg19, input_dir, styles_dir, tmp_path / "two", settings(**s))
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two") == expected_outputs(variants=1)
    for name in outputs(tmp_path / "one"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    rows = _manifest_without_seconds(tmp_path / "one" / "manifest.csv")
    assert rows == _manifest_without_seconds(tmp_path / "two" / "manifest.csv")
    # the draws are recorded: a blend of both styles with weights summing to 1, the traditional ops
    for r in rows:
        assert r["styles"] == "disc.png;stripes.png" and r["steps"] in ("1", "2")
        w = [float(v) for v in r["style_weights"].split(";")]
        assert sum(w) == pytest.approx(1.0, abs=2e-4) and all(v > 0 for v in w)
        flip, crop, jitter = r["traditional"].split(";")
        assert flip in ("flip=yes", "flip=no") and crop.startswith("crop=") and jitter.startswith("jitter=")
        assert r["traditional_at"] == "before"
    assert len({r["style_weights"] for r in rows}) == 5  # every output has its own blend
    # another seed draws other weights, betas and crops
    other = augment_plan.plan_jobs(GOOD, 2, settings(**s, seed=8))
    mine = augment_plan.plan_jobs(GOOD, 2, settings(**s))
    assert [(j.beta, j.weights, j.crop) for j in other] != [(j.beta, j.weights, j.crop) for j in mine]


def test_a_job_depends_only_on_seed_source_and_variant():
    """Draws do not move when other files come and go, when a shard or more variants are asked
    for, or when another traditional op is switched on."""
    s = settings(traditional="flip", variants=2)
    base = {(j.source, j.variant): j for j in augment_plan.plan_jobs(GOOD, 2, s)}
    more = augment_plan.plan_jobs(["aaa/new.png", *GOOD, "zzz/new.png"], 2, settings(traditional="flip", variants=3))
    for j in more:
        if (j.source, j.variant) in base:
            assert j == base[(j.source, j.variant)]
    jitter = augment_plan.plan_jobs(GOOD, 2, settings(traditional="flip,jitter", variants=2))
    assert [(j.styles, j.beta, j.flip) for j in jitter] == [(j.styles, j.beta, j.flip) for j in base.values()]


# --------------------------------------------------------------------------- resuming


class _Counter:
    def __init__(self, monkeypatch):
        self.calls, original = [], augment.StyleTransfer

        def counting(*args, **kw):
            self.calls.append(args[1].shape[0])
            return original(*args, **kw)

        monkeypatch.setattr(augment, "StyleTransfer", counting)


def test_a_rerun_skips_what_is_done_and_resumes_an_interrupted_run(vgg19, data, tmp_path, monkeypatch):
    input_dir, styles_dir = data
    out = tmp_path / "out"
    styles = augment_io.load_styles(styles_dir)
    # interrupted after the second batch was written: close the loop there
    run = Augmentation(vgg19, input_dir, styles, out, settings())
    it = iter(run)
    for ev in it:
        if len(run.written) == 4:
            break
    it.close()
    first = outputs(out)
    assert len(first) == 4 and len(read_rows(out / "manifest.csv")) == 4
    stamps = {n: (out / n).stat().st_mtime_ns for n in first}

    counter = _Counter(monkeypatch)
    run = Augmentation(vgg19, input_dir, styles, out, settings())
    assert run.already_done == 4 and run.total == 6
    list(run)
    assert sum(counter.calls) == 6  # only the missing images were optimized
    assert outputs(out) == expected_outputs()
    assert {n: (out / n).stat().st_mtime_ns for n in first} == stamps  # untouched
    rows = read_rows(out / "manifest.csv")
    assert sorted(r["output"] for r in rows) == sorted(expected_outputs())

    # a complete folder: nothing is optimized again
    counter.calls.clear()
    run = Augmentation(vgg19, input_dir, styles, out, settings())
    assert run.total == 0
    list(run)
    assert counter.calls == []

    # redone: an output whose file is gone, and one whose file exists but is not listed
    gone, unlisted = "cats/a__v0.png", "dogs/c__v1.png"
    (out / gone).unlink()
    shard_log = out / "manifest.shard-0-of-1.csv"
    kept = [r for r in read_rows(shard_log) if r["output"] != unlisted]
    shard_log.write_text(augment_io.csv_text(augment_io.MANIFEST_COLUMNS, kept))
    (out / "manifest.csv").unlink()
    run = Augmentation(vgg19, input_dir, styles, out, settings())
    assert sorted(j.output for j in run.pending) == sorted([gone, unlisted])
    list(run)
    assert sum(counter.calls) == 2
    assert sorted(r["output"] for r in read_rows(out / "manifest.csv")) == sorted(expected_outputs())


def test_a_folder_made_with_other_settings_is_refused(vgg19, data, tmp_path):
    input_dir, styles_dir = data
    run_all(vgg19, input_dir, styles_dir, tmp_path / "out", settings(variants=1))
    with pytest.raises(augment_io.AugmentError, match="made with other settings"):
        Augmentation(vgg19, input_dir, augment_io.load_styles(styles_dir), tmp_path / "out",
                     settings(variants=1, seed=8))
    # more variants of the same settings are fine: the first ones are kept
    run = Augmentation(vgg19, input_dir, augment_io.load_styles(styles_dir), tmp_path / "out", settings(variants=2))
    assert run.already_done == 5 and run.total == 5


def test_a_folder_from_before_the_beta_rename_resumes(vgg19, data, tmp_path):
    """Manifests whose column is still called ``ratio`` are read as ``beta``; appending to such a
    shard log keeps its columns in place, and manifest.csv is rebuilt with ``beta``."""
    input_dir, styles_dir = data
    out = tmp_path / "out"
    run_all(vgg19, input_dir, styles_dir, out, settings(variants=1))
    old = tuple("ratio" if c == "beta" else c for c in augment_io.MANIFEST_COLUMNS)
    for name in ("manifest.csv", "manifest.shard-0-of-1.csv"):
        rows = [{("ratio" if k == "beta" else k): v for k, v in r.items()} for r in read_rows(out / name)]
        (out / name).write_text(augment_io.csv_text(old, rows), encoding="utf-8")
    assert len(augment_io.read_manifest(out)) == 5
    run, _ = run_all(vgg19, input_dir, styles_dir, out, settings(variants=2))
    assert run.already_done == 5 and len(run.written) == 5
    rows = read_rows(out / "manifest.csv")
    assert list(rows[0]) == list(augment_io.MANIFEST_COLUMNS) and len(rows) == 10
    assert all(1e4 <= float(r["beta"]) <= 1e6 for r in rows)


def test_the_job_hash_is_unchanged_by_the_beta_rename(vgg19, tmp_path):
    """Pinned hashes (computed before ``ratio`` became ``beta``, and before the histogram start
    and the Fourier offset existed): outputs made then, with the settings of then (content start,
    pixels), stay resumable. Planning reads no pixels, so an empty input file and a flat style
    image do. Today's defaults make other outputs, hence other hashes."""
    (tmp_path / "in" / "cats").mkdir(parents=True)
    (tmp_path / "in" / "cats" / "a.png").write_bytes(b"")
    styles = [augment_io.StyleImage("grey.png", Image.new("RGB", (40, 40), (128, 128, 128)))]
    then = settings(steps=1, batch_size=4, init="content", parameterization="pixel")
    run = Augmentation(vgg19, tmp_path / "in", styles, tmp_path / "out", then)
    assert [j.beta for j in run.jobs] == [19330.0, 101100.0]
    assert run.hashes == {"cats/a__v0.png": "6301d4a9e17c", "cats/a__v1.png": "7caef842ff90"}
    now = Augmentation(vgg19, tmp_path / "in", styles, tmp_path / "out2", settings(steps=1, batch_size=4))
    assert set(now.hashes.values()).isdisjoint(run.hashes.values())


def test_the_old_name_ratio_range_still_works_in_recipes_and_on_the_command_line(capsys):
    def replay(settings):
        return AugmentSettings.from_dict(migrate({"settings": settings}, "augment")["settings"])

    assert replay({"ratio_range": [5, 50]}).beta_range == (5.0, 50.0)
    assert replay({"ratio_range": [5, 50], "beta_range": "6,60"}).beta_range == (6.0, 60.0)
    parser = cli.build_parser()
    args = parser.parse_args(["augment", "in", "styles", "-o", "out", "--ratio-range", "1,2"])
    assert args.beta_range == "1,2" and not hasattr(args, "ratio_range")
    with pytest.raises(SystemExit):
        parser.parse_args(["augment", "--help"])
    shown = capsys.readouterr().out
    assert "--beta-range" in shown and "--ratio-range" not in shown  # the old name is hidden


# --------------------------------------------------------------------------- bad inputs, atomic writes


def test_bad_files_are_skipped_into_skipped_csv_and_the_run_goes_on(vgg19, data, tmp_path):
    input_dir, styles_dir = data
    bad = add_bad_files(input_dir)
    out = tmp_path / "out"
    run, events = run_all(vgg19, input_dir, styles_dir, out, settings(variants=1))
    assert outputs(out) == expected_outputs(variants=1)  # every good image, before and after the bad ones
    skipped = read_rows(out / "skipped.csv")
    assert [r["path"] for r in skipped] == sorted(bad)
    for r in skipped:
        assert bad[r["path"]] in r["reason"] and "\n" not in r["reason"], r
        assert r["path"] in r["reason"]
    messages = [e.message for e in events if e.message]
    assert len(messages) == 4 and all(m.startswith("skipped ") for m in messages)
    assert len(read_rows(out / "manifest.csv")) == 5


def _leftovers(out: Path) -> list[str]:
    """Hidden temporary files left behind (the lock files stay by design: removing a lock file
    while another process opens it would let two writers lock two different files; so does the
    folder's settings file)."""
    return [p.name for p in out.rglob(".*") if not p.name.startswith(".lock.") and p.name != ".augment-settings.json"]


def test_writes_are_atomic_and_a_failed_write_loses_nothing_written(vgg19, data, tmp_path, monkeypatch):
    input_dir, styles_dir = data
    out = tmp_path / "out"
    run_all(vgg19, input_dir, styles_dir, out, settings(variants=1))
    assert _leftovers(out) == [] and len(outputs(out)) == 5

    # the disk fills up while the 3rd image of a new run is encoded: half a PNG was written
    original, calls = images.to_pil, []

    class HalfWritten:
        def __init__(self, img):
            self.img = img

        def save(self, fh, **kw):
            fh.write(b"\x89PNG\r\n\x1a\n half")
            raise OSError("No space left on device")

    def failing(t):
        calls.append(1)
        return HalfWritten(original(t)) if len(calls) == 3 else original(t)

    monkeypatch.setattr(augment.images, "to_pil", failing)
    run = Augmentation(vgg19, input_dir, augment_io.load_styles(styles_dir), tmp_path / "out2", settings(variants=1))
    with pytest.raises(OSError, match="No space left"):
        list(run)
    out2 = tmp_path / "out2"
    assert _leftovers(out2) == []
    assert len(outputs(out2)) == 2
    for name in outputs(out2):
        with Image.open(out2 / name) as im:
            im.load()  # complete PNGs only
    assert sorted(r["output"] for r in read_rows(out2 / "manifest.csv")) == sorted(outputs(out2))


# --------------------------------------------------------------------------- shards


def test_shards_partition_the_inputs_exactly_and_share_one_output_folder(vgg19, data, tmp_path):
    input_dir, styles_dir = data
    add_bad_files(input_dir)
    inputs = augment_io.list_inputs(input_dir)
    assert inputs == sorted(inputs) and len(inputs) == 9
    for n in (1, 2, 3, 4):
        parts = [[p for k, p in enumerate(inputs) if Shard(i, n).takes(k)] for i in range(n)]
        assert sorted(sum(parts, [])) == inputs  # every input exactly once
        plans = [augment_plan.plan_jobs(inputs, 2, settings(), Shard(i, n)) for i in range(n)]
        assert sorted((j for p in plans for j in p), key=lambda j: j.output) == \
            sorted(augment_plan.plan_jobs(inputs, 2, settings()), key=lambda j: j.output)

    out = tmp_path / "out"
    runs = [run_all(vgg19, input_dir, styles_dir, out, settings(variants=1), shard=Shard(i, 2))[0] for i in range(2)]
    assert {len(r.mine) for r in runs} == {4, 5}
    assert outputs(out) == expected_outputs(variants=1)
    assert sorted(r["output"] for r in read_rows(out / "manifest.csv")) == sorted(expected_outputs(variants=1))
    per_shard = [read_rows(out / f"manifest.shard-{i}-of-2.csv") for i in range(2)]
    assert not {r["output"] for r in per_shard[0]} & {r["output"] for r in per_shard[1]}
    assert len(read_rows(out / "skipped.csv")) == 4


def test_shard_parsing_and_the_torchrun_environment(monkeypatch):
    assert Shard.parse("1/4") == Shard(1, 4) and str(Shard(1, 4)) == "1/4"
    for bad in ("3/2", "2/2", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    assert augment_plan.shard_from_env({}) is None
    assert augment_plan.shard_from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}) == Shard(3, 8)
    with pytest.raises(ValueError, match="RANK"):
        augment_plan.shard_from_env({"RANK": "8", "WORLD_SIZE": "8"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert augment_plan.device_from_env("auto", {"LOCAL_RANK": "1"}) == "auto"  # no GPU: unchanged
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert augment_plan.device_from_env("auto", {"LOCAL_RANK": "1"}) == "cuda:1"
    assert augment_plan.device_from_env("cuda", {"LOCAL_RANK": "2"}) == "cuda:2"
    assert augment_plan.device_from_env("cpu", {"LOCAL_RANK": "2"}) == "cpu"
    assert augment_plan.device_from_env("auto", {}) == "auto"


def test_output_names_keep_the_stem_and_stay_distinct():
    stems = augment_plan.output_stems(["c/a.png", "c/a.JPG", "c/b.png", "d/a.png", "top.png"])
    assert stems == {"c/a.png": "c/a_png", "c/a.JPG": "c/a_JPG", "c/b.png": "c/b", "d/a.png": "d/a", "top.png": "top"}


# --------------------------------------------------------------------------- zips (the page's input and output)


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def test_dataset_zips_are_unpacked_safely(tmp_path):
    png = (tmp_path / "x.png")
    _pil(picture(40, 40)).save(png)
    data = png.read_bytes()
    n = archives.extract_dataset_zip(_zip({"ds/cats/a.png": data, "ds/dogs/b.png": data, "ds/.DS_Store": b"x",
                                          "__MACOSX/ds/cats/._a.png": b"x"}, symlink="ds/cats/link.png"),
                                    tmp_path / "one")
    assert n == 2 and augment_io.list_inputs(tmp_path / "one") == ["cats/a.png", "dogs/b.png"]  # top folder dropped
    archives.extract_dataset_zip(_zip({"cats/a.png": data, "cats\\b.png": data}), tmp_path / "two")
    assert augment_io.list_inputs(tmp_path / "two") == ["cats/a.png", "cats/b.png"]
    for evil in ("../evil.png", "cats/../../evil.png", "/etc/evil.png", "C:/evil.png"):
        with pytest.raises(archives.ArchiveError, match="refusing"):
            archives.extract_dataset_zip(_zip({"cats/a.png": data, evil: data}), tmp_path / "three")
    assert not (tmp_path / "evil.png").exists()
    with pytest.raises(archives.ArchiveError, match="limit"):
        archives.extract_dataset_zip(_zip({"cats/a.png": b"0" * 5000}), tmp_path / "four", max_bytes=4000)
    with pytest.raises(archives.ArchiveError, match="not a zip"):
        archives.extract_dataset_zip(b"PK not really", tmp_path / "five")


def test_zip_folder_holds_the_layout_and_the_two_csv_files(vgg19, data, tmp_path):
    input_dir, styles_dir = data
    run_all(vgg19, input_dir, styles_dir, tmp_path / "out", settings(variants=1))
    blob = archives.zip_folder(tmp_path / "out")
    names = zipfile.ZipFile(io.BytesIO(blob)).namelist()
    assert sorted(names) == sorted(expected_outputs(variants=1) | {"manifest.csv", "skipped.csv"})
    assert archives.zip_folder(tmp_path / "out") == blob  # same folder, same bytes


# --------------------------------------------------------------------------- the command line


def test_cli_augment_writes_the_dataset_and_resumes(vgg19, data, tmp_path, capsys, monkeypatch):
    """The real command; only the network is the session's untrained VGG19 instead of a fresh
    one (building VGG19 takes seconds; test_cli covers loading)."""
    from explorer.cli import commands

    loads = []
    monkeypatch.setattr("explorer.nets.models.load_model", lambda name, **kw: loads.append((name, kw)) or vgg19)
    input_dir, styles_dir = data
    add_bad_files(input_dir)
    out = tmp_path / "out"
    args = ["augment", input_dir, styles_dir, "-o", out, "--variants", "1", "--batch-size", "2", "--steps", "1",
            "--size", "48", "--beta-range", "1e4,1e5", "--traditional", "flip,jitter", "--seed", "3",
            "--untrained", "--quiet", "--report", tmp_path / "report.json"]
    rc, _, err = run_cli(capsys, *args)
    assert rc == 0, err
    assert "untrained weights" in err and "wrote 5 image(s)" in err and "4 input(s) skipped" in err
    assert outputs(out) == expected_outputs(variants=1)
    rows = read_rows(out / "manifest.csv")
    assert {r["traditional_at"] for r in rows} == {"before"} and all("jitter=" in r["traditional"] for r in rows)
    assert all(1e4 <= float(r["beta"]) <= 1e5 and r["seed"] == "3" for r in rows)
    assert loads == [("vgg19", {"weights": "untrained", "device": "auto"})]
    assert json.loads((tmp_path / "report.json").read_text())["written"] == 5
    rc, _, err = run_cli(capsys, *args, "--shard", "1/2")
    assert rc == 0 and "wrote 0 image(s)" in err and "shard 1/2" in err  # a finished folder: all done


@pytest.mark.parametrize("extra, message", [
    (["--shard", "3/2"], "shard 3/2"),
    (["--beta-range", "5,1"], "LO must not be above HI"),
    (["--steps", "ten"], "steps must be a number or a range"),
    (["--traditional", "rotate"], "traditional augmentation must be among flip, crop, jitter"),
    (["--blend", "3"], "--blend 3 needs at least 3 style images"),
])
def test_cli_augment_bad_options_are_one_error_line(data, tmp_path, capsys, extra, message):
    input_dir, styles_dir = data
    rc, _, err = run_cli(capsys, "augment", input_dir, styles_dir, "-o", tmp_path / "out", "--variants", "1",
                         "--untrained", "--quiet", *extra)
    assert rc == 2 and message in error_line(err)


def test_cli_augment_bad_folders_are_one_error_line(data, tmp_path, capsys):
    input_dir, styles_dir = data
    (tmp_path / "empty").mkdir()
    cases = [
        ([tmp_path / "missing", styles_dir, "-o", tmp_path / "o", "--variants", "1"], "input folder not found"),
        ([input_dir, tmp_path / "empty", "-o", tmp_path / "o", "--variants", "1"], "no style images"),
        ([input_dir, styles_dir, "-o", input_dir / "cats" / "o", "--variants", "1"], "must not be inside"),
        ([input_dir, styles_dir, "-o", tmp_path / "o"], "--variants N is required"),
    ]
    for args, message in cases:
        rc, _, err = run_cli(capsys, "augment", *args, "--untrained", "--quiet")
        assert rc == 2 and message in error_line(err), (args, err)
    with pytest.raises(SystemExit) as exc:  # argparse's own errors exit from the parser
        run_cli(capsys, "augment", input_dir, styles_dir, "--variants", "1", "--untrained")
    assert exc.value.code == 2 and "required: -o/--output" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_each_output_starts_in_its_own_style_s_colours(vgg19, tmp_path):
    """The default start: every image of a batch is its content in the colours of the style its
    job drew (not the batch's first). With a learning rate of 1e-9 the outputs are their starts."""
    src = tmp_path / "in" / "cats"
    src.mkdir(parents=True)
    for i in range(4):
        _pil(picture(48, 48).roll(5 * i, dims=-1)).save(src / f"c{i}.png")
    styles_dir = tmp_path / "styles"
    styles_dir.mkdir()
    ramp = torch.linspace(0, 1, 48).view(1, 1, 1, 48).expand(1, 3, 48, 48)
    red, blue = ramp * torch.tensor([1.0, 0.1, 0.1]).view(1, 3, 1, 1), ramp * torch.tensor([0.1, 0.1, 1.0]).view(1, 3, 1, 1)
    _pil(red).save(styles_dir / "red.png")
    _pil(blue).save(styles_dir / "blue.png")
    styles = augment_io.load_styles(styles_dir)
    out = tmp_path / "out"
    s = settings(variants=2, batch_size=4, steps=1, lr=1e-9)
    run, _ = run_all(vgg19, tmp_path / "in", styles_dir, out, s)
    assert len(run.written) == 8 and {r["styles"] for r in run.written} == {"red.png", "blue.png"}
    for row in run.written:
        got = images.to_tensor(images.load_image(str(out / row["output"])).image)
        content = images.to_tensor(images.resize_long_side(images.load_image(str(tmp_path / "in" / row["source"])).image, 48))
        style_img = images.to_tensor(styles[[st.name for st in styles].index(row["styles"])].image)
        expected = color.histogram_start(content, [(style_img, 1.0)])
        assert float((got - expected).abs().max()) <= 1.5 / 255, row["output"]
        means = got.mean(dim=(0, 2, 3))
        assert (means[0] > means[2]) == (row["styles"] == "red.png")


def test_augmentation_defaults_and_recipes_from_before_them():
    s = AugmentSettings()
    assert (s.init, s.parameterization, s.steps) == ("histogram", "auto", (20, 20))
    assert s.style_settings(20, 128).image_parameterization == "pixel"  # Adam runs on the pixels
    old = {**AugmentSettings().to_dict(), "init": "content", "steps": [50, 50]}
    del old["parameterization"]
    assert AugmentSettings.from_dict(migrate({"settings": old}, "augment")["settings"]).parameterization == "pixel"
    with pytest.raises(ValueError, match="init must be one of histogram, content, noise; got 'style'"):
        AugmentSettings(init="style")


@pytest.mark.parametrize("given, steps, size, traditional", [
    (dict(steps="5", size=64.0, traditional="Crop, FLIP"), (5, 5), (64, 64), ("flip", "crop")),
    (dict(steps="10,20", size=[48, 96], traditional="none"), (10, 20), (48, 96), ()),
    (dict(steps=(3.0, 4), size="48, 48", traditional=["jitter", "flip"]), (3, 4), (48, 48), ("flip", "jitter")),
])
def test_augment_ranges_and_operations_accept_every_spelling(given, steps, size, traditional):
    s = AugmentSettings(**given)
    assert (s.steps, s.size, s.traditional) == (steps, size, traditional)
    assert AugmentSettings.from_dict(s.to_dict()) == s  # the recipe form reads back the same


@pytest.mark.parametrize("given, message", [
    (dict(traditional=5), "traditional augmentation must be names separated by commas"),
    (dict(style_layers=5), "style_layers must be names separated by commas"),
    (dict(size=(48, 96, 128)), "size must be a number or a range LO,HI"),
    (dict(steps=2.5), "steps must be a number or a range LO,HI"),
    (dict(size="16,64"), "size must be between 32 and 4096; got 16"),
    (dict(beta_range=0), "beta must be > 0"),
    (dict(weight_range="0,0.0001"), "the blend weight range must reach at least 0.001"),
    (dict(traditional_at="during"), "traditional_at must be one of before, after"),
])
def test_a_recipe_of_the_wrong_shape_names_the_augment_option(given, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        AugmentSettings.from_dict({**AugmentSettings().to_dict(), **given})
