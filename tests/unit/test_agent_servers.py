"""``corral agent --server``: one URL, several repeated or comma-separated (the first leads, the
others are the client's fallbacks, in order), and a clear error for what is not a URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from corral_cli.agent_cmd import agent


def _config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *servers: str) -> object:
    import corral_cli.agent_main as agent_main

    seen: list[object] = []
    monkeypatch.setattr(agent_main, "exec_agent", seen.append)  # the config it would run with
    args = [a for s in servers for a in ("--server", s)]
    res = CliRunner().invoke(agent, [*args, "--token", "t", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    return seen[0]


def test_one_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = _config(monkeypatch, tmp_path, "https://a:6443")
    assert (cfg.server, cfg.fallback_servers) == ("https://a:6443", ())  # type: ignore[attr-defined]


def test_several_servers_in_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = _config(monkeypatch, tmp_path, "https://a:6443, https://b:6443", "https://c:6443")
    assert cfg.server == "https://a:6443"  # type: ignore[attr-defined]
    assert cfg.fallback_servers == ("https://b:6443", "https://c:6443")  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["a:6443", ","])
def test_what_is_not_a_url_is_refused(bad: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(agent, ["--server", bad, "--token", "t", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--server" in res.output, res.output
