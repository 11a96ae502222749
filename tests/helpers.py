"""Helpers shared by the test files (imported, not collected)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Iterator

import torch

from explorer import cli


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
