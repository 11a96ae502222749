"""The installation: the wheel ``pip install .`` builds (the package, the app, the ``explorer``
console script, nothing of tests or bench), ``explorer app`` from a checkout or the installed
copy, ``explorer doctor``, and a torch/torchvision pair that does not import together, which
every command and every page reports in one line naming both versions and the fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from streamlit.testing.v1 import AppTest

import explorer.app
from explorer.cli import parser as cli, app as cmd_app
from explorer.core import devices, installation
from tests.helpers import app_env, broken_torchvision, error_line, run_cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p.name for p in (ROOT / "pages").glob("*.py"))
TORCH = installation.installed_version("torch")
MAJOR_MINOR = ".".join(TORCH.split(".")[:2])


# --------------------------------------------------------------------------- the wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of this checkout (so no build/ or egg-info is left in it), built as
    CI builds it but without an index or build isolation: ``pip wheel --no-deps``."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", ".pytest_cache", ".venv", "venv", "build", "dist", "*.egg-info", "test-artifacts"))
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "--quiet", str(src), "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    (whl,) = (tmp / "dist").glob("*.whl")
    return whl


@pytest.mark.slow  # builds a wheel: about 10 s on a 2-core CPU
def test_the_wheel_holds_the_package_the_app_and_the_console_script_but_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "explorer").rglob("*.py")}
    assert {n for n in names if n.endswith(".py") and n.startswith("explorer/") and "/streamlit_app/" not in n} \
        == modules
    app = "explorer/streamlit_app/"
    assert {app + "app.py", app + ".streamlit/config.toml", *(f"{app}pages/{p}" for p in PAGES)} <= set(names)
    tops = {n.split("/")[0] for n in names}
    assert all(t == "explorer" or t.endswith(".dist-info") for t in tops), f"only explorer and its metadata: {tops}"
    assert not [n for n in names if n.startswith(app) and n.count("/") == 2 and n != app + "app.py"], \
        "of the top level only app.py (not setup.py)"
    info = {n.rsplit("/", 1)[1]: zipfile.ZipFile(wheel).read(n).decode() for n in names if ".dist-info/" in n}
    assert "explorer = explorer.cli.parser:main" in info["entry_points.txt"].splitlines()
    required = {_req(l.split(":", 1)[1]) for l in info["METADATA"].splitlines() if l.startswith("Requires-Dist:")}
    listed = {_req(l) for l in (ROOT / "requirements.txt").read_text().splitlines() if l.strip()
              and not l.startswith("#")}
    assert required == listed  # requirements.txt is the one list of dependencies


def _req(line: str) -> tuple[str, str]:
    r = Requirement(line)
    return r.name, str(r.specifier)


@pytest.mark.slow  # builds a wheel (shared with the test above)
def test_the_installed_package_runs_from_any_folder_and_finds_its_own_app(wheel, tmp_path):
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    p = subprocess.run([sys.executable, "-m", "explorer", "--help"], cwd=elsewhere, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "doctor" in p.stdout and "app" in p.stdout, p.stderr
    shipped = installation.app_script(site / "explorer")
    assert shipped == site / "explorer" / "streamlit_app" / "app.py"
    assert (shipped.parent / "pages" / "style_transfer.py").read_text() == (ROOT / "pages" / "style_transfer.py").read_text()
    # the installed copy of the app runs, and so does a page through its navigation
    code = ("import sys\nfrom streamlit.testing.v1 import AppTest\n"
            "at = AppTest.from_file(sys.argv[1], default_timeout=120)\nat.run()\n"
            "at.switch_page('pages/activations.py').run()\n"
            "print(len(at.exception), [t.value for t in at.title])\n")
    env.update(EXPLORER_ALLOW_UNTRAINED="1", EXPLORER_OFFLINE="1", TORCH_HOME=str(tmp_path / "th"))
    p = subprocess.run([sys.executable, "-c", code, str(shipped)], cwd=elsewhere, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.stdout.splitlines()[-1] == "0 ['Layer activations']", p.stdout + p.stderr


# --------------------------------------------------------------------------- explorer app


def test_app_script_is_the_checkouts_app_else_the_copy_installed_with_the_package(tmp_path):
    assert installation.app_script() == ROOT / "app.py"
    installed = tmp_path / "site-packages" / "explorer"
    (installed / "streamlit_app" / "pages").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="reinstall"):
        installation.app_script(installed)
    (installed / "streamlit_app" / "app.py").write_text("")
    (installed / "streamlit_app" / "pages" / "style_transfer.py").write_text("")
    assert installation.app_script(installed) == installed / "streamlit_app" / "app.py"
    (installed.parent / "app.py").write_text("")  # somebody else's app.py in site-packages: not ours
    assert installation.app_script(installed) == installed / "streamlit_app" / "app.py"


@pytest.fixture
def launched(monkeypatch) -> list[list[str]]:
    """The command lines ``explorer app`` hands to exec (POSIX) or runs as a child (Windows);
    neither happens."""
    commands: list[list[str]] = []
    monkeypatch.setattr(cmd_app.os, "execv", lambda path, argv: commands.append(list(argv)))
    monkeypatch.setattr(cmd_app.subprocess, "call", lambda argv: commands.append(list(argv)) or 0)
    return commands


def test_explorer_app_serves_the_app_with_this_python_and_passes_streamlit_options_on(launched, capsys):
    rc, _, err = run_cli(capsys, "app", "--server.port", "8502", "--server.headless=true")
    assert rc == 0, err
    assert launched == [[sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                         "--server.port", "8502", "--server.headless=true"]]
    with pytest.raises(SystemExit) as exc:  # other commands still refuse what they do not know
        cli.main(["weights", "status", "--server.port", "8502"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --server.port 8502" in error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- explorer doctor


@pytest.fixture
def weights_folder(monkeypatch, tmp_path) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "vgg19-caffe-features-q8.pth").write_bytes(b"")
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(folder))
    return folder / "vgg19-caffe-features-q8.pth"


def test_doctor_reports_versions_device_cpu_precision_and_weights_on_one_screen(capsys, weights_folder):
    rc, out, err = run_cli(capsys, "doctor")
    assert rc == 0 and not err
    lines = out.splitlines()
    assert len(lines) <= 24 and max(len(l) for l in lines if "/" not in l) <= 100  # one screen (paths aside)
    text = "\n".join(lines)
    assert f"torch        {TORCH}" in text
    assert f"torchvision  {installation.installed_version('torchvision')}  (pairs with torch {TORCH})" in text
    flags = devices.cpu_flags()
    assert f"AVX2 {'yes' if 'avx2' in flags else 'no'}, AVX-512 {'yes' if 'avx512f' in flags else 'no'}" in text
    assert f"native bf16 (AVX512-BF16 or AMX) {'yes' if devices.cpu_has_bf16() else 'no'}" in text
    auto = devices.resolve_device("auto")
    assert (f"--precision auto runs the networks in "
            f"{devices.precision_name(devices.resolve_precision('auto', auto))} on {auto}") in text
    vgg = next(l for l in lines if l.strip().startswith("vgg19 "))
    assert str(weights_folder) in vgg
    assert next(l for l in lines if l.strip().startswith("googlenet ")).endswith("missing")


def test_doctor_json_is_the_same_report_for_machines(capsys, weights_folder):
    rc, out, _ = run_cli(capsys, "doctor", "--json")
    assert rc == 0
    r = json.loads(out)
    assert r["torch"]["torch"] == TORCH and r["torch"]["mismatch"] is None and r["problem"] is None
    assert r["compute"]["cpu"]["native_bf16"] is devices.cpu_has_bf16()
    assert r["compute"]["precision_auto_cpu"] == devices.precision_name(
        devices.resolve_precision("auto", torch.device("cpu")))
    found = {n["model"]: n["found"] for n in r["weights"]["networks"]}
    assert found["vgg19"] == str(weights_folder) and found["resnet50"] is None


def test_doctor_reports_a_torchvision_that_does_not_pair_and_ends_with_the_fix(capsys, monkeypatch, tmp_path):
    broken_torchvision(monkeypatch, tmp_path, "0.28.0")
    rc, out, err = run_cli(capsys, "doctor")
    assert rc == 2
    assert f"torchvision  0.28.0  (does not pair: torchvision 0.28 is built for torch 2.13, not {MAJOR_MINOR}" in out
    assert "Weights      unknown (not checked: torch or torchvision cannot be imported)" in out
    assert "AVX2" in out  # the rest of the report is still there
    line = error_line(err)
    assert "torchvision 0.28.0" in line and f"torch {TORCH}" in line


# --------------------------------------------------------------------------- a torch/torchvision mismatch


def test_which_torchvision_pairs_with_which_torch():
    assert installation.torchvision_for("2.14.1") == "0.29"
    assert installation.torchvision_for("2.2.0+cpu") == "0.17"
    assert installation.pair_mismatch("2.14.1", "0.29.1") is None
    assert installation.pair_mismatch("2.14.1+cpu", "0.29.1+cpu") is None
    assert installation.pair_mismatch("2.14.1", "0.28.0") == "torchvision 0.28 is built for torch 2.13, not 2.14"
    assert installation.pair_mismatch("2.13.0+cpu", "0.28.0") == "torch is a +cpu build and torchvision a default (PyPI) build"


COMMANDS = [
    ["stylize", "sample:astronaut", "sample:gravel", "-o", "{tmp}/o.png", "--untrained", "--steps", "1", "--size", "32"],
    ["dream", "sample:chelsea", "-o", "{tmp}/o.png", "--untrained"],
    ["featurevis", "-o", "{tmp}/o.png", "--untrained"],
    ["activations", "sample:chelsea", "-o", "{tmp}/o.png", "--untrained"],
    ["saliency", "sample:gravel", "-o", "{tmp}/o.png", "--untrained"],
    ["augment", "{tmp}", "{tmp}", "-o", "{tmp}/out", "--variants", "1", "--untrained"],
    ["reconstruct", "sample:chelsea", "sample:brick", "-o", "{tmp}/o.png", "--untrained", "--steps", "1", "--size", "32"],
    ["weights", "status"],
    ["weights", "download", "--models", "vgg19"],
    ["app"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_command_says_in_one_line_which_torchvision_goes_with_the_installed_torch(argv, capsys, monkeypatch,
                                                                                         tmp_path, launched):
    broken_torchvision(monkeypatch, tmp_path, "0.28.0")
    rc, _, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert rc == 2
    line = error_line(err)
    assert line.startswith(f"error: torchvision 0.28.0 cannot be loaded with torch {TORCH} "
                           "(RuntimeError: operator torchvision::nms does not exist)")
    assert f"torchvision 0.28 is built for torch 2.13, not {MAJOR_MINOR}" in line
    assert "torchvision 0.(N+15) goes with torch 2.N" in line
    want = installation.torchvision_for(TORCH)
    assert f'pip install --force-reinstall "torch=={MAJOR_MINOR}.*" "torchvision=={want}.*"' in line
    assert f"--index-url {installation.CPU_INDEX}" in line
    assert not (tmp_path / "o.png").exists() and not launched


@pytest.mark.slow  # a fresh Python that imports torch: about 5 s on a loaded 2-core CPU
def test_a_torchvision_built_for_another_torch_gives_one_line_not_a_traceback(tmp_path):
    """The real failure in a fresh process: a torchvision package first on the path whose import
    raises what a CUDA torchvision 0.28 raises beside a CPU-only torch."""
    fake = tmp_path / "fake"
    (fake / "torchvision").mkdir(parents=True)
    (fake / "torchvision" / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    (fake / "torchvision-0.28.0.dist-info").mkdir()
    (fake / "torchvision-0.28.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n")
    env = dict(os.environ, PYTHONPATH=str(fake))
    p = subprocess.run([sys.executable, "-m", "explorer", "stylize", "sample:astronaut", "sample:gravel", "-o",
                        str(tmp_path / "o.png"), "--untrained"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2
    line = error_line(p.stderr)
    assert "torchvision 0.28.0 cannot be loaded with torch" in line and "operator torchvision::nms" in line
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("script", ["app.py", *(f"pages/{p}" for p in PAGES)])
def test_every_page_shows_the_mismatch_in_an_error_box_not_a_traceback(script, monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)
    broken_torchvision(monkeypatch, tmp_path, "0.28.0")
    # the pages import explorer.app.ui first; make this run import it afresh, as a new server would
    monkeypatch.delitem(sys.modules, "explorer.app.ui", raising=False)
    monkeypatch.delattr(explorer.app, "ui", raising=False)
    at = AppTest.from_file(str(ROOT / script), default_timeout=60)
    at.run()
    assert not at.exception
    (box,) = at.error
    assert box.value.startswith(f"torchvision 0.28.0 cannot be loaded with torch {TORCH}")
    assert "torchvision 0.(N+15) goes with torch 2.N" in box.value and "pip install" in box.value
