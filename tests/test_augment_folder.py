"""One augmentation output folder, one shard plan at a time and one set of settings; and the
memory check that refuses a run before it decodes an image (explorer.batch.augment_io.ShardLock,
explorer.batch.augment_folder, explorer.batch.augment.check_augment_memory, ``python -m explorer augment``).

CPU, the session's untrained VGG19, the tiny dataset of tests/test_augment.py (five 40-48 px
images, 48 px working size, one Adam step). Where a run needs weights from a file, the untrained
network is given a :class:`~explorer.nets.weights.WeightsInfo` of a file instead (the pictures do not
matter here, only what the folder records and compares).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from explorer.batch import augment, augment_folder, augment_io
from explorer.cli import common as cmd_common
from explorer.io import images
from explorer.batch.augment import Augmentation
from explorer.batch.augment_plan import Shard
from explorer.nets.memory import MemoryEstimateError
from explorer.nets.weights import WeightsInfo
from tests.helpers import error_line, picture, run_cli
from tests.test_augment import data, outputs, run_all, settings  # noqa: F401  (data: fixture)

ROOT = Path(__file__).resolve().parents[1]


def _file_weights(name: str, digest_char: str) -> WeightsInfo:
    return WeightsInfo("file", f"/weights/{name}", f"weights from {name}", digest="sha256:" + digest_char * 64)


def _no_model(monkeypatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr(cmd_common, "load_net", refuse)


# --------------------------------------------------------------------------- one shard plan at a time


def test_another_shard_plan_is_refused_while_shards_of_one_plan_run_together(tmp_path):
    """Locks held by separately opened files conflict as two processes' would (flock)."""
    out = tmp_path / "out"
    plain = augment_io.ShardLock(out, Shard()).acquire()
    try:
        with pytest.raises(augment_io.AugmentError, match=r"a plain run \(no --shard\) is writing into .*--shard 0/2"):
            augment_io.ShardLock(out, Shard(0, 2)).acquire()
    finally:
        plain.release()
    held = [augment_io.ShardLock(out, Shard(i, 4)).acquire() for i in range(4)]  # one plan: side by side
    try:
        for shard, words in [(Shard(), r"a run in 4 shards \(--shard I/4\)"), (Shard(1, 2), "a run in 4 shards"),
                             (Shard(3, 4), r"another augment run is writing into .* \(shard 3/4\)")]:
            with pytest.raises(augment_io.AugmentError, match=words):
                augment_io.ShardLock(out, shard).acquire()
        held.pop().release()  # shard 3/4 ended: it may start again, other plans still may not
        held.append(augment_io.ShardLock(out, Shard(3, 4)).acquire())
        with pytest.raises(augment_io.AugmentError, match="a run in 4 shards"):
            augment_io.ShardLock(out, Shard()).acquire()
    finally:
        for lock in held:
            lock.release()
    augment_io.ShardLock(out, Shard(0, 2)).acquire().release()  # one plan after the other is fine


def test_a_run_of_another_shard_plan_is_refused_in_one_line_before_any_work(vgg19, data, tmp_path, capsys,
                                                                            monkeypatch):
    """A plain run and ``--shard 0/2`` into one folder at once: the shard run used to overwrite
    the plain run's images while the plain run's manifest described its own."""
    input_dir, styles_dir = data
    out = tmp_path / "out"
    plain = iter(Augmentation(vgg19, input_dir, augment_io.load_styles(styles_dir), out, settings(variants=1)))
    next(plain)  # started: it holds its locks
    try:
        other = Augmentation(vgg19, input_dir, augment_io.load_styles(styles_dir), out, settings(variants=1),
                             shard=Shard(0, 2))
        with pytest.raises(augment_io.AugmentError, match="a plain run"):
            list(other)
        assert not (out / "manifest.shard-0-of-2.csv").exists() and outputs(out) == set()
        _no_model(monkeypatch)
        rc, _, err = run_cli(capsys, "augment", input_dir, styles_dir, "-o", out, "--variants", "1", "--steps", "1",
                             "--size", "48", "--shard", "0/2", "--untrained", "--quiet")
        assert rc == 2 and "a plain run (no --shard) is writing into" in error_line(err)
    finally:
        plain.close()
    assert outputs(out) == set()  # the plain run was stopped before its first batch; nothing else wrote


def test_the_locks_go_with_a_killed_process(tmp_path):
    """Two processes: one runs shard 0/2 and is killed; a plain run is refused while it lives and
    may start at once after (no stale lock to delete)."""
    out = tmp_path / "out"
    code = ("import sys; from pathlib import Path; from explorer.batch.augment_io import ShardLock; "
            "from explorer.batch.augment_plan import Shard; "
            "lock = ShardLock(Path(sys.argv[1]), Shard(0, 2)).acquire(); print('held', flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(augment_io.AugmentError, match=r"a run in 2 shards \(--shard I/2\)"):
            augment_io.ShardLock(out, Shard()).acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    augment_io.ShardLock(out, Shard()).acquire().release()


# --------------------------------------------------------------------------- one set of settings


def test_a_resume_with_another_weights_file_is_refused_naming_both(vgg19, data, tmp_path, monkeypatch):
    """v0 from one network and v1 from another: same weights kind, same file name, other bytes."""
    input_dir, styles_dir = data
    out = tmp_path / "out"
    monkeypatch.setattr(vgg19, "weights", _file_weights("vgg19.pth", "a"))
    run_all(vgg19, input_dir, styles_dir, out, settings(variants=1))

    monkeypatch.setattr(vgg19, "weights", WeightsInfo("file", "/elsewhere/vgg19.pth", "weights from vgg19.pth",
                                                      digest="sha256:" + "b" * 64))
    with pytest.raises(augment_io.AugmentError) as exc:
        Augmentation(vgg19, input_dir, augment_io.load_styles(styles_dir), out, settings(variants=2))
    message = str(exc.value)
    assert "weights: weights from vgg19.pth (sha256:aaaaaaaa…) in the folder" in message
    assert "weights from vgg19.pth (sha256:bbbbbbbb…) now" in message and "\n" not in message
    assert len(outputs(out)) == 5
    recorded = json.loads((out / augment_folder.SETTINGS_FILE).read_text())
    assert recorded["weights"] == {"kind": "file", "file": "vgg19.pth", "digest": "sha256:" + "a" * 64,
                                   "label": "weights from vgg19.pth"}

    # the same bytes under another name are the same weights: it resumes
    monkeypatch.setattr(vgg19, "weights", _file_weights("renamed.pth", "a"))
    run = Augmentation(vgg19, input_dir, augment_io.load_styles(styles_dir), out, settings(variants=2))
    assert run.already_done == 5 and run.total == 5


def test_a_resume_with_other_settings_names_the_setting_with_both_values(vgg19, data, tmp_path):
    input_dir, styles_dir = data
    out = tmp_path / "out"
    run_all(vgg19, input_dir, styles_dir, out, settings(variants=1))

    def refused(s, styles=None) -> str:
        with pytest.raises(augment_io.AugmentError) as exc:
            Augmentation(vgg19, input_dir, styles or augment_io.load_styles(styles_dir), out, s)
        return str(exc.value)

    assert "seed: 7 in the folder, 8 now" in refused(settings(variants=1, seed=8))
    assert "size: 48 in the folder, 48,64 now" in refused(settings(variants=1, size=(48, 64)))
    assert "lr: default in the folder, 0.05 now" in refused(settings(variants=1, lr=0.05))
    assert "init: histogram in the folder, noise now" in refused(settings(variants=1, init="noise"))
    assert "parameterization: pixel in the folder, fourier now" in refused(settings(variants=1,
                                                                                    parameterization="fourier"))
    both = refused(settings(variants=1, seed=8, traditional="flip"))
    assert "seed: 7 in the folder, 8 now" in both and "traditional augmentation: none in the folder, flip now" in both
    styles = augment_io.load_styles(styles_dir)
    extra = augment_io.StyleImage("zebra.png", Image.new("RGB", (40, 40), (200, 10, 10)))
    assert ("style images: 2 (disc.png, stripes.png) in the folder, 3 (disc.png, stripes.png, zebra.png) now"
            in refused(settings(variants=1), styles + [extra]))
    repainted = [augment_io.StyleImage("disc.png", images.to_pil(picture(40, 48))), styles[1]]
    assert "style image disc.png: its pixels differ" in refused(settings(variants=1), repainted)

    # what changes only speed or the split of the work is not compared; more variants add outputs
    same = dict(variants=2, batch_size=3, precision="fp32", parameterization="pixel")
    run = Augmentation(vgg19, input_dir, augment_io.load_styles(styles_dir), out, settings(**same), shard=Shard(1, 2))
    assert run.already_done == 2 and run.total == 2


def test_a_folder_from_before_the_settings_file_resumes_and_its_manifest_checks_the_weights(vgg19, data, tmp_path,
                                                                                          monkeypatch):
    input_dir, styles_dir = data
    out = tmp_path / "out"
    monkeypatch.setattr(vgg19, "weights", _file_weights("vgg19-a.pth", "a"))
    run_all(vgg19, input_dir, styles_dir, out, settings(variants=1))
    (out / augment_folder.SETTINGS_FILE).unlink(missing_ok=True)  # as an older version left it

    monkeypatch.setattr(vgg19, "weights", _file_weights("vgg19-b.pth", "b"))
    with pytest.raises(augment_io.AugmentError, match="weights: weights from vgg19-a.pth in the folder's manifest, "
                                                      r"weights from vgg19-b.pth \(sha256:bbbbbbbb…\) now"):
        Augmentation(vgg19, input_dir, augment_io.load_styles(styles_dir), out, settings(variants=2))

    monkeypatch.setattr(vgg19, "weights", _file_weights("vgg19-a.pth", "c"))  # the same name: all it can check
    run, _ = run_all(vgg19, input_dir, styles_dir, out, settings(variants=2))
    assert run.already_done == 5 and len(run.written) == 5
    assert json.loads((out / augment_folder.SETTINGS_FILE).read_text())["weights"]["digest"] == "sha256:" + "c" * 64


def test_cli_refuses_other_weights_or_writes_into_a_new_folder_when_asked(vgg19, data, tmp_path, capsys,
                                                                         monkeypatch):
    input_dir, styles_dir = data
    out = tmp_path / "out"

    def load_model(name, weights="auto", device="auto", **kw):
        monkeypatch.setattr(vgg19, "weights", _file_weights(Path(weights).name, Path(weights).stem[-1]))
        return vgg19

    monkeypatch.setattr("explorer.nets.models.load_model", load_model)
    base = ["augment", input_dir, styles_dir, "-o", out, "--variants", "1", "--batch-size", "5", "--steps", "1",
            "--size", "48", "--quiet"]
    rc, _, err = run_cli(capsys, *base, "--weights", tmp_path / "net-a.pth")
    assert rc == 0 and "wrote 5 image(s)" in err, err
    rc, _, err = run_cli(capsys, *base, "--weights", tmp_path / "net-b.pth")
    assert rc == 2 and "weights: weights from net-a.pth" in error_line(err) and "weights from net-b.pth" in err

    second = tmp_path / "out-2"
    for _ in range(2):  # the second time it resumes there
        rc, _, err = run_cli(capsys, *base, "--weights", tmp_path / "net-b.pth", "--new-folder-if-different")
        assert rc == 0 and f"writing into {second}" in err and f"shard 0/1 into {second}" in err, err
    assert "wrote 0 image(s)" in err and len(outputs(second)) == 5 and len(outputs(out)) == 5
    rc, _, err = run_cli(capsys, *base, "--weights", tmp_path / "net-a.pth", "--new-folder-if-different")
    assert rc == 0 and f"shard 0/1 into {out}:" in err and "writing into" not in err and "wrote 0 image(s)" in err


# --------------------------------------------------------------------------- memory, before any image


def _watch_work(monkeypatch) -> list[str]:
    """Records every image decoded and every style target computed (a forward pass)."""
    seen: list[str] = []
    load, targets = images.load_image, augment.style_targets

    def loading(src, *a, **kw):
        seen.append(f"decode {kw.get('name', src)}")
        return load(src, *a, **kw)

    def computing(*a, **kw):
        seen.append("forward")
        return targets(*a, **kw)

    monkeypatch.setattr(images, "load_image", loading)
    monkeypatch.setattr(augment, "style_targets", computing)
    return seen


def test_a_run_too_big_for_memory_is_refused_before_any_image_is_decoded(vgg19, data, tmp_path, capsys,
                                                                          monkeypatch):
    """The largest size of the range, square, at the batch the run would use."""
    input_dir, styles_dir = data
    styles = augment_io.load_styles(styles_dir)
    monkeypatch.setenv("EXPLORER_MEMORY_LIMIT", "1MB")
    seen = _watch_work(monkeypatch)
    with pytest.raises(MemoryEstimateError, match=r"a 96 px style transfer \(2 images at a time\) needs about"):
        Augmentation(vgg19, input_dir, styles, tmp_path / "out", settings(size=(48, 96), batch_size=2))
    assert seen == []

    _no_model(monkeypatch)
    rc, _, err = run_cli(capsys, "augment", input_dir, styles_dir, "-o", tmp_path / "out", "--variants", "1",
                         "--size", "48,96", "--batch-size", "16", "--untrained", "--quiet")
    # five inputs, one variant: batches of at most 5
    assert rc == 2 and "a 96 px style transfer (5 images at a time) needs about" in error_line(err)
    assert seen == [] and not (tmp_path / "out").exists()


@pytest.mark.realweights
def test_real_weights_files_are_told_apart_by_their_bytes_not_their_name(tmp_path, capsys, shared_images):
    """The real VGG19 file, then a fine-tuned copy of it under the same name (conv1_1 scaled by
    1.05): the resume is refused naming both files' SHA-256, which is what the folder recorded."""
    import hashlib

    import torch

    from tests.conftest import shared_path

    real = shared_path("weights/vgg19-caffe-features-q8.pth")
    tuned = tmp_path / "tuned" / real.name
    tuned.parent.mkdir()
    sd = torch.load(real, map_location="cpu", weights_only=True)
    sd["features.0.weight"] = sd["features.0.weight"] * 1.05
    torch.save(sd, tuned)
    src, styles, out = tmp_path / "in" / "city", tmp_path / "styles", tmp_path / "out"
    src.mkdir(parents=True)
    styles.mkdir()
    for name, folder in (("tubingen.jpg", src), ("starry_night.jpg", styles)):
        with Image.open(shared_images / name) as im:
            im.convert("RGB").resize((64, 48)).save(folder / (name[:-4] + ".png"))
    base = ["augment", src.parent, styles, "-o", out, "--variants", "1", "--steps", "1", "--size", "48", "--quiet"]
    rc, _, err = run_cli(capsys, *base, "--weights", real)
    assert rc == 0, err
    digest = {p: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in (real, tuned)}
    rc, _, err = run_cli(capsys, *base, "--weights", tuned)
    line = error_line(err)
    assert rc == 2 and "weights: weights from vgg19-caffe-features-q8.pth" in line
    assert f"({digest[real][:15]}…) in the folder" in line and f"({digest[tuned][:15]}…) now" in line
    assert json.loads((out / augment_folder.SETTINGS_FILE).read_text())["weights"]["digest"] == digest[real]
