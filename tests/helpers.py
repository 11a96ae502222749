"""Helpers shared by the test files (imported, not collected)."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.metadata
import importlib.util
import socket
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
import torch

from explorer.cli import parser as cli
from explorer.core import devices


def picture(h: int, w: int) -> torch.Tensor:
    """(1, 3, h, w) in [0, 1]: a colour gradient with a disc (not symmetric, not periodic)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    disc = (((x - 0.4) ** 2 + (y - 0.5) ** 2) < 0.08).float()
    return torch.stack([x, y, disc]).unsqueeze(0)


def stripes(h: int, w: int) -> torch.Tensor:
    """(1, 3, h, w) in [0, 1]: vertical stripes, features unlike :func:`picture`'s."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    s = (torch.sin(x * 40) > 0).float()
    return torch.stack([s, 1 - s, 0.5 * torch.ones_like(x)]).unsqueeze(0)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """Run ``python -m explorer ARGS`` in-process; return (exit status, stdout, stderr)."""
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def error_line(err: str) -> str:
    """The one ``error: ...`` line of stderr; fails when there is not exactly one, when it is
    not the last thing printed, or when a traceback leaked."""
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1, err
    assert lines[-1] == errors[0], err
    return errors[0]


def app_env(monkeypatch, tmp_path) -> None:
    """The environment of every AppTest: untrained weights allowed (no pretrained weights can
    be had here), no downloads, an empty private torch cache."""
    monkeypatch.setenv("EXPLORER_ALLOW_UNTRAINED", "1")
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.delenv("EXPLORER_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A loopback server that accepts connections and never answers (the network that made the
    weights download hang); yields its ``host:port``. Used directly as a URL's host, or as an
    ``https_proxy``, which urllib connects to instead of the real host."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    conns, stop = [], threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(2)
        for c in conns:
            c.close()
        srv.close()


def native_bf16(device: str = "cpu") -> bool:
    """Whether bf16 runs natively on ``device``: a CPU with AVX512-BF16 or AMX
    (:func:`explorer.core.devices.cpu_has_bf16`), or a CUDA GPU with bf16."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return devices.cpu_has_bf16()


def fast_precision(device: str = "cpu") -> str:
    """``"bf16"`` where it runs natively on ``device`` (:func:`native_bf16`), else ``"fp32"``.
    For tests whose property holds in either precision and that run mixed precision where it is
    fast: on a CPU without native bf16 (AVX2 only) torch emulates bf16, many times slower than
    fp32."""
    return "bf16" if native_bf16(device) else "fp32"


#: Marks a test of a property specific to bf16: skipped on a CPU that would only emulate bf16.
needs_native_bf16 = pytest.mark.skipif(
    not native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 would only be emulated, slowly")


class _BrokenTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An installed torchvision built for another torch: its import fails as the real one does
    (``RuntimeError: operator torchvision::nms does not exist``), and its package metadata says
    ``version``."""

    def __init__(self, dist_info: Path):
        self.dist_info = dist_info

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "torchvision" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise RuntimeError("operator torchvision::nms does not exist")

    def find_distributions(self, context=importlib.metadata.DistributionFinder.Context()):
        if context.name == "torchvision":
            return iter([importlib.metadata.PathDistribution(self.dist_info)])
        return iter(())


def broken_torchvision(monkeypatch, tmp_path: Path, version: str = "0.28.0") -> None:
    """From here to the end of the test, ``import torchvision`` fails as it does beside a torch
    it was not built for, and torchvision's installed version reads ``version``. The real
    torchvision stays loaded for the modules that already use it, and comes back afterwards."""
    dist_info = tmp_path / f"torchvision-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torchvision\nVersion: {version}\n")
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenTorchvision(dist_info), *sys.meta_path])


def open_app_page(page: str, timeout: float = 120):
    """The app in Streamlit's AppTest, switched to ``page`` (e.g. ``"pages/deep_dream.py"``),
    with no exception on Home or on the page. ``timeout``: seconds per script run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=timeout)
    at.run()
    assert not at.exception, at.exception
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def conv_only_vgg19_folder(tmp_path: Path) -> Path:
    """A weights folder holding a seeded VGG19 file with conv layers only (no classifier), named
    like the Caffe file: what a network without a class objective looks like to the pages."""
    import torchvision

    folder = tmp_path / "weights"
    folder.mkdir()
    torch.manual_seed(3)
    sd = torchvision.models.vgg19(weights=None).features.state_dict()
    torch.save({f"features.{k}": v for k, v in sd.items()}, folder / "vgg19-caffe-conv.pth")
    return folder
