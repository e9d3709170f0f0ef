"""The verification benchmark (benchmarks/verify_crown.py) through the harness, at a tiny size.

``python -m benchmarks --models verify --quick`` in-process: 8 digits, the MLP's CROWN only,
auto_LiRPA's side from the committed record (never run here). No timed assertion.
"""

import argparse
import json

from benchmarks import run, verify_crown


def test_quick_verify_benchmark_runs_through_the_harness():
    args = argparse.Namespace(models=["verify"], quick=True, rounds=1, frameworks=["tlean", "raw"])
    tables, skipped = run.run_models(args)
    assert not skipped and [t.key for t in tables] == ["verify"]
    (row,) = tables[0].rows
    assert row.framework == "MLP, CROWN" and row.seconds > 0
    assert row.loss0 == "8"  # every one of the 8 digits certified at eps 0.01, as auto_LiRPA
    text = run.table_markdown(tables[0])
    assert text.startswith("### Verification: certify 8 digits") and "| MLP, CROWN |" in text


def test_recorded_auto_lirpa_figures_are_complete():
    record = json.loads(verify_crown.RECORD.read_text())
    assert record["points"] == 360 and {"cpu", "date", "torch"} <= set(record["machine"])
    assert "mlp" in record["auto_LiRPA"]
    for name in record["auto_LiRPA"]:
        for method in ("ibp", "crown", "alpha-crown"):
            assert record["auto_LiRPA"][name][method]["ms"] > 0
            assert record["auto_LiRPA"][name][method]["certified"] == record["tlean"][name][method]["certified"]
