"""Style blend specs and blended Gram targets (explorer.style.blend), sweep axes (explorer.batch.sweep_axes),
parameter sweeps (explorer.batch.sweep) and their table, CSV and grid image (explorer.batch.sweep_render)
(CPU, untrained VGG19, 48 px, a few steps)."""

from __future__ import annotations

import csv
import io
import math

import pytest
import torch

from explorer.batch import sweep as batch
from explorer.batch.sweep import Sweep
from explorer.style.blend import format_style_spec, parse_style_spec
from explorer.batch.sweep_axes import SweepAxis, log_alpha_beta, parse_axis
from explorer.batch.sweep_render import sweep_csv, sweep_grid_image, sweep_table
from explorer.style.transfer import StyleTransfer, run_style_transfer
from explorer.style.gatys import style_targets
from explorer.style.settings import StyleSettings
from tests.helpers import picture, stripes

LAYERS = ["relu1_1", "relu2_1", "relu3_1"]


def _settings(**kw) -> StyleSettings:
    base = dict(size=48, steps=3, optimizer="adam", precision="fp32", init="noise", style_layers=tuple(LAYERS),
                preview_every=100)
    base.update(kw)
    return StyleSettings(**base)


@pytest.fixture
def counted(monkeypatch):
    """Every StyleTransfer the sweep builds, in order (the real class, counted)."""
    made: list[StyleTransfer] = []

    class Counted(StyleTransfer):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            made.append(self)

    monkeypatch.setattr(batch, "StyleTransfer", Counted)
    return made


def _run(sweep: Sweep) -> list:
    events = list(sweep)
    assert events and events[-1].done and sweep.complete
    return events


# --------------------------------------------------------------------------- blend specs


@pytest.mark.parametrize("text, expected", [
    ("a.jpg", [("a.jpg", 1.0)]),
    ("a.jpg:0.7,b.jpg:0.3", [("a.jpg", 0.7), ("b.jpg", 0.3)]),
    (" sample:gravel:2 , sample:brick ", [("sample:gravel", 2.0), ("sample:brick", 1.0)]),
    ("sample:gravel", [("sample:gravel", 1.0)]),
    ("C:/x/a.png:1e-1,b.png:0", [("C:/x/a.png", 0.1), ("b.png", 0.0)]),
])
def test_parse_style_spec(text, expected):
    assert parse_style_spec(text) == expected
    # the inverse writes a spec that parses back to the same entries
    assert parse_style_spec(format_style_spec(expected)) == expected


@pytest.mark.parametrize("text, message", [
    ("", "no style image"),
    ("a.jpg,,b.jpg", "empty entry"),
    ("a.jpg:-1", "finite number >= 0"),
    ("a.jpg:0,b.jpg:0", "sum to 0"),
    (",".join(f"s{i}.jpg" for i in range(7)), "at most 6"),
])
def test_parse_style_spec_errors_are_one_line(text, message):
    with pytest.raises(ValueError, match=message) as exc:
        parse_style_spec(text)
    assert "\n" not in str(exc.value)


def test_format_style_spec_single_image_is_its_reference():
    assert format_style_spec([("sample:gravel", 1.0)]) == "sample:gravel"
    assert format_style_spec([("a.png", 0.7), ("b.png", 0.3)]) == "a.png:0.7,b.png:0.3"


# --------------------------------------------------------------------------- blended targets


def test_blend_with_weights_one_and_zero_is_the_single_style_target(vgg19):
    a, b = stripes(48, 48), picture(48, 48)
    single = style_targets(vgg19, a, LAYERS)
    for blend in ([(a, 1.0), (b, 0.0)], [(b, 0.0), (a, 1.0)], [(a, 0.3), (b, 0.0)]):
        mixed = style_targets(vgg19, blend, LAYERS)
        for layer in LAYERS:
            torch.testing.assert_close(mixed[layer], single[layer], rtol=0, atol=1e-6)


def test_blend_of_images_of_different_sizes(vgg19):
    a, b = stripes(48, 48), picture(40, 64)  # other size and aspect ratio
    ga, gb = style_targets(vgg19, a, LAYERS), style_targets(vgg19, b, LAYERS)
    mixed = style_targets(vgg19, [(a, 3.0), (b, 1.0)], LAYERS)  # weights normalized: 0.75, 0.25
    for layer in LAYERS:
        n = ga[layer].shape[0]
        assert mixed[layer].shape == (n, n)
        torch.testing.assert_close(mixed[layer], 0.75 * ga[layer] + 0.25 * gb[layer], rtol=1e-5, atol=1e-7)
    # and a style transfer runs on the blend
    r = run_style_transfer(vgg19, picture(48, 48), [(a, 0.5), (b, 0.5)], _settings(steps=1))
    assert r.image.shape == (1, 3, 48, 48) and math.isfinite(r.final_losses["total"])


# --------------------------------------------------------------------------- axes


def test_log_alpha_beta_and_axis_validation():
    assert log_alpha_beta(1e-8, 1e-4, 3) == [1e-8, 1e-6, 1e-4]
    assert log_alpha_beta(1e-2, 1e-4, 3) == [1e-2, 1e-3, 1e-4]
    assert log_alpha_beta(5e-7, 5e-7, 1) == [5e-7]
    assert parse_axis("steps", "10, 20,40").values == (10, 20, 40)
    assert parse_axis("alpha_beta", "1e-6, 1e-4").values == (1e-6, 1e-4)
    assert parse_axis("ratio", "1e-6, 1e-4") == SweepAxis("alpha_beta", (1e-6, 1e-4))  # the old name of saved commands
    assert parse_axis("optimizer", "Adam, L-BFGS").values == ("adam", "lbfgs")
    layers = parse_axis("style_layers", "shallow; relu4_1, relu5_1; relu1_1,relu3_1")
    assert layers.values == ("shallow", "deep", "relu1_1,relu3_1")
    assert layers.labels == ["shallow (relu1_1, relu2_1)", "deep (relu4_1, relu5_1)", "relu1_1, relu3_1"]
    for bad, message in [(lambda: log_alpha_beta(0, 1, 3), "positive"), (lambda: log_alpha_beta(1, 2, 9), "1 to 8"),
                         (lambda: SweepAxis("lr", (1,)), "unknown sweep parameter"),
                         (lambda: SweepAxis("seed", ()), "at least one"),
                         (lambda: SweepAxis("seed", (1, 1)), "twice"),
                         (lambda: SweepAxis("steps", (0, 5)), "from 1"),
                         (lambda: SweepAxis("init", ("zeros",)), "init must be one of"),
                         (lambda: parse_axis("seed", "1, two"), "numbers separated by commas")]:
        with pytest.raises(ValueError, match=message) as exc:
            bad()
        assert "\n" not in str(exc.value)


def test_sweep_rejects_bad_combinations(vgg19):
    c, s = picture(48, 48), stripes(48, 48)
    seeds = SweepAxis("seed", (0, 1))
    with pytest.raises(ValueError, match="two different parameters"):
        Sweep(vgg19, c, s, _settings(), seeds, SweepAxis("seed", (2, 3)))
    with pytest.raises(ValueError, match="content weight alpha > 0"):
        Sweep(vgg19, c, s, _settings(content_weight=0.0), SweepAxis("alpha_beta", (1e-6,)))
    with pytest.raises(ValueError, match="relu9_9"):
        Sweep(vgg19, c, s, _settings(), SweepAxis("style_layers", ("relu9_9",)))
    with pytest.raises(ValueError, match="style image"):
        Sweep(vgg19, c, None, _settings(), seeds)


# --------------------------------------------------------------------------- the grid


def test_one_axis_grid_is_one_row_in_the_given_order(vgg19, counted):
    sweep = Sweep(vgg19, picture(48, 48), stripes(48, 48), _settings(init="content", steps=2),
                  SweepAxis("init", ("style", "content")))
    assert sweep.shape == (1, 2) and sweep.row_labels == [""]
    assert sweep.col_labels == ["start: style", "start: content"]
    _run(sweep)
    assert [(c.row, c.col, c.col_label) for c in sweep.cells] == [(0, 0, "start: style"), (0, 1, "start: content")]
    assert [c.settings.init for c in sweep.cells] == ["style", "content"]
    assert len(counted) == 2  # different starts are different runs


def test_two_axis_grid_cells_labels_and_order(vgg19, counted):
    ratios = (1e-6, 1e-4)
    sweep = Sweep(vgg19, picture(48, 48), stripes(48, 48), _settings(steps=2),
                  SweepAxis("alpha_beta", ratios), SweepAxis("optimizer", ("adam", "lbfgs")))
    assert sweep.shape == (2, 2)
    assert sweep.row_labels == ["ratio 1e-06", "ratio 0.0001"] and sweep.col_labels == ["Adam", "L-BFGS"]
    events = _run(sweep)
    cells = sweep.cells
    assert [(c.row, c.col) for c in cells] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [(c.row_label, c.col_label) for c in cells] == [(r, o) for r in sweep.row_labels for o in sweep.col_labels]
    for c in cells:
        assert c.values == {"alpha_beta": ratios[c.row], "optimizer": ("adam", "lbfgs")[c.col]}
        assert c.settings.content_weight == 1.0
        assert c.settings.style_weight == pytest.approx(1.0 / ratios[c.row])
        assert c.image.shape == (1, 3, 48, 48) and c.step == 2
        assert set(c.losses) == {"content", "style", "tv", "total"}
    # Adam batches the two ratios; L-BFGS runs each ratio alone: 3 runs
    assert [tr.content.shape[0] for tr in counted] == [2, 1, 1]
    assert sweep.total_steps == 3 * 2 and events[-1].step == 6
    assert all(e.stage.startswith("run ") for e in events)


def test_iteration_axis_is_one_run_and_its_snapshots(vgg19, counted):
    steps = (1, 3, 4)
    sweep = Sweep(vgg19, picture(48, 48), stripes(48, 48), _settings(steps=99), SweepAxis("steps", steps))
    _run(sweep)
    assert len(counted) == 1
    run = counted[0]
    assert run.settings.steps == 4 and run.content.shape[0] == 1
    snaps = dict(run.snapshots)
    assert set(steps) <= set(snaps)
    for cell, k in zip(sweep.cells, steps):
        assert cell.step == k and cell.settings.steps == k
        assert torch.equal(cell.image, snaps[k])
        assert cell.losses["total"] == run.history[k]["total"]
    assert torch.equal(sweep.cells[-1].image, run.result().image)


def test_steps_by_seed_with_adam_is_one_batched_run(vgg19, counted):
    sweep = Sweep(vgg19, picture(48, 48), stripes(48, 48), _settings(), SweepAxis("steps", (2, 4)),
                  SweepAxis("seed", (0, 1, 2)))
    _run(sweep)
    assert len(counted) == 1 and counted[0].content.shape[0] == 3 and counted[0].seeds == [0, 1, 2]
    assert len(sweep.cells) == 6 and {c.batch for c in sweep.cells} == {3}


def test_seeds_with_adam_run_as_one_batch_that_follows_the_single_runs(vgg19, counted):
    """Same tolerance as tests/test_style.py::test_a_batch_of_two_contents_follows_the_two_single_runs
    (batched convolutions round differently; Adam's first steps move a pixel by about lr)."""
    content, style_img = picture(48, 48), stripes(48, 48)
    settings = _settings(steps=4)
    sweep = Sweep(vgg19, content, style_img, settings, SweepAxis("seed", (5, 6, 7)))
    _run(sweep)
    assert len(counted) == 1 and counted[0].content.shape[0] == 3
    assert [p.batch for p in sweep.plan] == [3]
    for cell, seed in zip(sweep.cells, (5, 6, 7)):
        single_settings = StyleSettings.from_dict({**settings.to_dict(), "seed": seed})
        assert cell.settings == single_settings
        single = run_style_transfer(vgg19, content, style_img, single_settings)
        assert cell.losses["total"] == pytest.approx(single.final_losses["total"], rel=1e-3)
        assert cell.losses["content"] == pytest.approx(single.final_losses["content"], rel=1e-3)
        diff = (cell.image - single.image).abs()
        assert float(diff.mean()) < 1e-3 and float(diff.max()) <= 5 * settings.effective_lr
    # different seeds start from different noise, so the cells differ
    assert not torch.equal(sweep.cells[0].image, sweep.cells[1].image)


def test_lbfgs_runs_seeds_one_after_another_and_batches_are_capped(vgg19):
    c, s = picture(48, 48), stripes(48, 48)
    lbfgs = Sweep(vgg19, c, s, _settings(optimizer="lbfgs"), SweepAxis("alpha_beta", (1e-6, 1e-4)),
                  SweepAxis("seed", (0, 1, 2)))
    assert [p.batch for p in lbfgs.plan] == [1] * 6
    assert len({(p.seeds[0], p.settings.style_weight) for p in lbfgs.plan}) == 6
    adam = Sweep(vgg19, c, s, _settings(), SweepAxis("alpha_beta", (1e-6, 1e-4)), SweepAxis("seed", (0, 1, 2)),
                 max_batch=4)
    assert [p.batch for p in adam.plan] == [4, 2]
    assert sorted(cell for p in adam.plan for cell, _, _ in p.cells) == list(range(6))
    # the seed only matters for a noise start: starting from the content image, seeds share one image
    same = Sweep(vgg19, c, s, _settings(init="content"), SweepAxis("seed", (0, 1, 2)))
    assert [(p.batch, len(p.cells)) for p in same.plan] == [(1, 3)]
    # style layer sets cannot share a run
    layers = Sweep(vgg19, c, s, _settings(), SweepAxis("style_layers", ("shallow", "deep")), SweepAxis("seed", (0, 1)))
    assert [(p.batch, p.settings.style_layers) for p in layers.plan] == \
        [(2, ("relu1_1", "relu2_1")), (2, ("relu4_1", "relu5_1"))]


# --------------------------------------------------------------------------- outputs


def test_csv_has_one_row_per_cell_with_its_final_losses(vgg19):
    sweep = Sweep(vgg19, picture(48, 48), stripes(48, 48), _settings(steps=2), SweepAxis("seed", (0, 1)),
                  SweepAxis("alpha_beta", (1e-6, 1e-5)))
    _run(sweep)
    text = sweep_csv(sweep.cells)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4
    for row, cell in zip(rows, sweep.cells):
        assert (int(row["row"]), int(row["col"])) == (cell.row, cell.col)
        assert row["row_label"] == cell.row_label and row["col_label"] == cell.col_label
        for key in ("content", "style", "tv", "total"):
            assert float(row[key]) == cell.losses[key]
        assert int(row["seed"]) == cell.settings.seed and int(row["step"]) == 2
        assert float(row["ratio"]) == pytest.approx(cell.values["alpha_beta"])
        assert float(row["seconds"]) > 0 and int(row["batch"]) == 4
    assert sweep_table(sweep.cells)[0].keys() == rows[0].keys()


def test_grid_image_lays_out_every_cell_and_marks_missing_ones(vgg19):
    sweep = Sweep(vgg19, picture(48, 48), stripes(48, 48), _settings(steps=1), SweepAxis("seed", (0, 1)),
                  SweepAxis("alpha_beta", (1e-6, 1e-5, 1e-4)))
    _run(sweep)
    full = sweep_grid_image(sweep.cells, row_title=sweep.axes[0].title, col_title=sweep.axes[1].title,
                            title="untrained weights")
    assert full.mode == "RGB"
    # 2 rows x 3 columns of 128 px cells (48 px images are scaled up for the labels)
    assert full.width > 3 * 128 and full.height > 2 * 128
    again = sweep_grid_image(sweep.cells[:2], rows=sweep.row_labels, cols=sweep.col_labels,
                             row_title=sweep.axes[0].title, col_title=sweep.axes[1].title, title="untrained weights")
    assert again.size == full.size  # a stopped sweep keeps its layout, with "not run" boxes
    assert again.tobytes() != full.tobytes()
    with pytest.raises(ValueError, match="no cells"):
        sweep_grid_image([])


def test_snapshot_steps_are_checked(vgg19):
    with pytest.raises(ValueError, match="between 0 and 3"):
        StyleTransfer(vgg19, picture(48, 48), stripes(48, 48), _settings(), snapshot_steps=[4])
