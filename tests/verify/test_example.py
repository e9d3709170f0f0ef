"""examples/certify.py runs end to end with a tiny config: the table's figures, results.json and the PNG."""

import json

from configs.certify import Certify
from examples import certify


def test_certify_example_runs(tmp_path, capsys):
    config = Certify(steps=10, batch_size=32, eval_points=8, eval_eps="0.01,0.05", alpha_steps=2, out_dir=str(tmp_path))
    results = certify.run(config)
    assert set(results["models"]) == {"normal", "ibp", "crown-ibp"}
    for row in results["models"].values():
        for method in certify.METHODS:
            assert len(row[method]) == 2 and all(0.0 <= v <= 1.0 for v in row[method])
            assert row[method][1] <= row[method][0]  # a larger ball certifies no more digits
        assert row["alpha-crown"][0] >= row["crown"][0]
    assert json.loads((tmp_path / "results.json").read_text())["points"] == 8
    assert (tmp_path / "certified.png").stat().st_size > 0
    assert "certified accuracy on 8 test digits" in capsys.readouterr().out
