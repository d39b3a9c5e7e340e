"""``corral eval --routing``: confusion per route stage, against a kNN baseline."""

from __future__ import annotations

import json
from pathlib import Path

from corral.cli import main
from corral.eval.routing_eval import dev_set, split


def test_shipped_dev_set_covers_every_routed_family_and_off_topic() -> None:
    items = dev_set()
    experts = {i.expert for i in items}
    assert experts == {"forecaster", "detector", "doc-parser", "classifier", "ner", "fast"}
    train, test = split(items)
    assert {i.expert for i in train} == {i.expert for i in test} == experts
    assert not {i.text for i in train} & {i.text for i in test}


def test_eval_routing_reports_accuracy_and_confusion_per_stage(tmp_path: Path, capsys) -> None:
    rows = [
        ("Forecast the next 6 values: 1, 2, 3, 4, 5, 6, 7, 8", "forecaster"),
        ("Predict the next values of this series", "forecaster"),
        ("Detect the people in this photo", "detector"),
        ("Find the faces in this picture", "detector"),
        ("Extract the fields from this invoice", "doc-parser"),
        ("What is the total on this receipt?", "doc-parser"),
        ("Write a haiku about autumn", "fast"),
        ("What is the capital of France?", "fast"),
    ]
    data = tmp_path / "routes.jsonl"
    data.write_text("".join(json.dumps({"text": t, "expert": e}) + "\n" for t, e in rows))
    assert main(["eval", "--routing", str(data), "--out", str(tmp_path / "out")]) == 0
    reports = json.loads((tmp_path / "out" / "routing.json").read_text())
    whole = reports[0]
    assert whole["items"] == 8 and whole["accuracy"] >= 0.75
    # each stage's confusion rows are the expected experts it saw
    semantic, coordinator = whole["confusion"]["semantic"], whole["confusion"]["coordinator"]
    assert semantic["detector"] == {"detector": 2}
    assert coordinator["fast"] == {"fast": 2}
    assert reports[-1]["method"].startswith("kNN over examples")
    assert "stage semantic" in capsys.readouterr().out
