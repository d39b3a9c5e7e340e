from __future__ import annotations

from pathlib import Path

import pytest

from corral.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_check_seed_config_exits_zero_and_says_where_it_looked(
    capsys, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["check", str(ROOT / "examples" / "seed.yaml")]) == 0
    out = capsys.readouterr().out
    for name in ("fast", "embedder", "reranker", "anomaly-detector"):
        assert name in out
    assert f"{tmp_path}/models--cross-encoder--ms-marco-MiniLM-L-6-v2" in out
    assert "remedy:" in out and "config is valid" in out


def test_check_default_config_finds_package_models(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["check"]) == 0
    assert "5 of 5 experts can serve now" in capsys.readouterr().out


def test_invalid_config_exits_nonzero_with_one_line_per_problem(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: a\n    model: x\n    defualt: true\nserverr: {}\n")
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "line 4: models[0].defualt: unknown key 'defualt' (did you mean 'default'?)" in err
    assert "line 5: serverr: unknown key 'serverr' (did you mean 'server'?)" in err


def test_models_catalog_lists_founding_ids(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["models", "--catalog"]) == 0
    assert "facebook/bart-large-mnli" in capsys.readouterr().out


def test_ask_talks_to_a_running_server(capsys, default_server) -> None:
    assert (
        main(
            [
                "ask",
                "--task",
                "classify",
                "The striker scored twice",
                "--labels",
                "sport,cooking",
                "--url",
                default_server.url,
            ]
        )
        == 0
    )
    assert '"label": "sport"' in capsys.readouterr().out


def test_ask_prints_the_answer_and_the_route_it_took(capsys, default_server) -> None:
    ticket = "Is this ticket about billing or a bug: 'I was charged twice'"
    assert main(["ask", ticket, "--max-tokens", "48", "--url", default_server.url]) == 0
    err = capsys.readouterr().err
    assert "[route: semantic:ticket-triage; answered by classifier]" in err
    assert "semantic    best route 'ticket-triage' scored" in err
    assert "tool classify_classifier" in err and "llm  fast" in err


def test_ask_without_server_says_so(capsys) -> None:
    assert main(["ask", "--task", "ner", "hello", "--url", "http://127.0.0.1:9"]) == 1
    assert "is `corral serve` running?" in capsys.readouterr().err


def test_no_command_prints_help(capsys) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit):
        main(["--version"])


def test_serve_strict_refuses_when_weights_are_missing(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert main(["serve", str(ROOT / "examples" / "seed.yaml"), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "--strict" in err and "cross-encoder/ms-marco-MiniLM-L-6-v2" in err
