"""One augmentation output folder, one shard plan at a time and one set of settings; and the
memory check that refuses a run before it decodes an image (explorer.augment_io.ShardLock,
explorer.augment_folder, explorer.augment.check_augment_memory, ``python -m explorer augment``).

CPU, the session's untrained VGG19, the tiny dataset of tests/test_augment.py (five 40-48 px
images, 48 px working size, one Adam step). Where a run needs weights from a file, the untrained
network is given a :class:`~explorer.weights.WeightsInfo` of a file instead (the pictures do not
matter here, only what the folder records and compares).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from explorer import augment_io, cmd_common
from explorer.augment import Augmentation
from explorer.augment_plan import Shard
from tests.helpers import error_line, run_cli
from tests.test_augment import data, outputs, run_all, settings  # noqa: F401  (data: fixture)

ROOT = Path(__file__).resolve().parents[1]


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
    code = ("import sys; from pathlib import Path; from explorer.augment_io import ShardLock; "
            "from explorer.augment_plan import Shard; "
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
