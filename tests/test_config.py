from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import Task, default_config, load_config, parse_config
from corral.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_founding_config_loads_unchanged() -> None:
    config = load_config(ROOT / "examples" / "seed.yaml")
    assert [m.name for m in config.models] == [
        "fast",
        "powerful",
        "embedder",
        "reranker",
        "classifier",
        "forecaster",
        "detector",
        "coder",
        "doc-parser",
        "anomaly-detector",
    ]
    assert config.model_named("fast").default is True  # type: ignore[union-attr]
    assert config.server.host == "127.0.0.1"


def test_builtin_default_config_is_valid() -> None:
    config = default_config()
    assert {m.task for m in config.models if m.task} == {Task.RERANK, Task.CLASSIFY}
    # the whole mixture; the names other configs and tests rely on stay
    assert {"fast", "embedder", "reranker", "classifier", "ner"} <= {m.name for m in config.models}


def test_env_interpolation_with_defaults() -> None:
    config = parse_config(
        "models:\n  - name: a\n    model: ${MODEL_ID}\nserver:\n  port: ${PORT:-9000}\n",
        environ={"MODEL_ID": "acme/thing"},
    )
    assert config.models[0].model == "acme/thing"
    assert config.server.port == 9000


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    return info.value.problems


def test_unknown_keys_name_line_and_suggest_nearest() -> None:
    problems = _problems(
        "models:\n"
        "  - name: a\n"
        "    model: x\n"
        "    taks: embed\n"
        "    batch: {max_sise: 3}\n"
        "runtime:\n"
        "  devise: cpu\n"
    )
    assert "line 4: models[0].taks: unknown key 'taks' (did you mean 'task'?)" in problems
    assert (
        "line 5: models[0].batch.max_sise: unknown key 'max_sise' (did you mean 'max_size'?)"
        in problems
    )
    assert "line 7: runtime.devise: unknown key 'devise' (did you mean 'device'?)" in problems


def test_an_option_the_backend_does_not_take_is_a_config_error_naming_its_line() -> None:
    problems = _problems(
        "models:\n"
        "  - name: chat\n"
        "    model: HuggingFaceTB/SmolLM2-135M-Instruct\n"
        "    options: {n_ctxx: 2048}\n"
        "  - name: embedder\n"
        "    model: sentence-transformers/all-MiniLM-L6-v2\n"
        "    options:\n"
        "      runtime: onxx\n"
        "  - {name: graph, model: pyg/sage, task: graph, backend: torch-geometric, options: {epochs: 0}}\n"
    )
    assert problems[0].startswith(
        "line 4: models[0].options.n_ctxx: unknown option for backend llama-cpp; "
        "did you mean 'n_ctx'? it takes: chat_format, chat_template, file,"
    )
    assert problems[1].startswith("line 8: models[1].options.runtime: Input should be 'auto'")
    assert problems[2] == (
        "line 9: models[2].options.epochs: Input should be greater than or equal to 1"
    )


def test_every_backend_says_which_options_it_takes() -> None:
    from corral.experts.registry import REGISTRY, expert_class

    for task, backend in REGISTRY:
        assert expert_class(task, backend).options_model is not None, (task, backend)


def test_one_line_per_problem_with_line_numbers() -> None:
    problems = _problems(
        "models:\n  - name: a\n    model: x\n  - name: b\n    task: juggling\nserver:\n  port: ${NOPE}\n"
    )
    assert any(p.startswith("line 4: models[1].model: Field required") for p in problems)
    assert any(
        p.startswith("line 5: models[1].task:") and "juggling" not in p.split(":")[0]
        for p in problems
    )
    assert any(
        p.startswith("line 7: server.port: environment variable ${NOPE} is not set")
        for p in problems
    )


def test_duplicate_names_and_bad_yaml() -> None:
    assert any(
        "used twice" in p
        for p in _problems("models:\n  - {name: a, model: x}\n  - {name: a, model: y}\n")
    )
    assert _problems("models: [\n")[0].startswith("line ")
    assert "mapping" in _problems("- just a list\n")[0]
