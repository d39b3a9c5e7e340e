"""Every registered expert class can describe itself as a coordinator tool."""

from __future__ import annotations

import pytest

from corral.config import ModelConfig
from corral.experts import REGISTRY, LoadContext, expert_class


@pytest.mark.parametrize(("task", "backend"), sorted(REGISTRY))
def test_tool_schema_is_a_function_with_json_schema(task, backend, tmp_path) -> None:
    cls = expert_class(task, backend)
    assert (cls.task, cls.backend) == (task, backend)
    spec = ModelConfig(name="my-expert", model="x")
    tool = cls(LoadContext(path=tmp_path, device="cpu", spec=spec)).tool_schema()
    assert tool["type"] == "function"
    assert tool["function"]["name"] == f"{task.value}_my_expert"
    parameters = tool["function"]["parameters"]
    assert parameters["type"] == "object" and parameters["required"]
    assert tool["function"]["description"]
