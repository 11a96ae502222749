"""Helpers shared by the test files (imported, not collected)."""

from __future__ import annotations

from explorer import cli


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
