"""decal.calibrate / decal.Calibrator: the same fitted calibrator and test probabilities as
`decal calibrate`, and calibrator files that load on either side."""

from __future__ import annotations

import json

import numpy as np
import pytest

import decal
from conftest import run_cli

METHODS = ["temperature", "temperature-lbfgs", "vector", "histogram", "isotonic"]


@pytest.mark.parametrize("method", METHODS)
def test_calibrate_equals_cli(method, data, decal_bin, tmp_path):
    out = tmp_path / "cli"
    run_cli(decal_bin, "calibrate", "--method", method,
            "--val-logits", data.val32_path, "--val-labels", data.val_labels_path,
            "--test-logits", data.logits32_path, "--test-labels", data.labels_path, "--out", out)
    cli_record = json.loads((out / "calibrator.json").read_text())
    cli_probs = np.load(out / "test_probs.npy")

    cal = decal.calibrate(method, data.val32, data.val_labels)
    record = json.loads(cal.to_json())
    assert record["calibrator"] == cli_record["calibrator"]
    assert record["num_classes"] == cli_record["num_classes"] == data.k
    assert record["fitted_on"]["rows"] == cli_record["fitted_on"]["rows"]
    assert cal.params == cli_record["calibrator"]
    assert cal.num_classes == data.k
    probs = cal.apply(data.logits32)
    assert probs.dtype == np.float64 and probs.shape == cli_probs.shape
    assert np.array_equal(probs, cli_probs)

    # The CLI's file loads in Python and gives the same probabilities ...
    loaded = decal.Calibrator.from_json((out / "calibrator.json").read_text())
    assert np.array_equal(loaded.apply(data.logits32), cli_probs)
    # ... and Python's file is applied by the CLI.
    cal.save(tmp_path / "py.json")
    run_cli(decal_bin, "calibrate", "--apply", tmp_path / "py.json",
            "--test-logits", data.logits32_path, "--test-labels", data.labels_path, "--out", tmp_path / "applied")
    assert np.array_equal(np.load(tmp_path / "applied" / "test_probs.npy"), cli_probs)


def test_calibrator_attributes_and_round_trip(data):
    cal = decal.calibrate("temperature", data.val32, data.val_labels)
    assert cal.method == "temperature" and cal.params["fit_method"]
    assert cal.temperature == cal.params["temperature"] > 0
    again = decal.Calibrator.from_json(cal.to_json())
    assert json.loads(again.to_json())["calibrator"] == cal.params
    assert np.array_equal(again.apply(data.logits32), cal.apply(data.logits32))
    # A bare calibrator object loads too.
    bare = decal.Calibrator.from_json(json.dumps(cal.params))
    assert np.array_equal(bare.apply(data.logits32[:5]), cal.apply(data.logits32[:5]))
    assert decal.calibrate("vector", data.val32, data.val_labels).temperature is None
    assert "temperature" in repr(cal)


def test_calibrated_rows_are_distributions(data):
    for method in METHODS:
        p = decal.calibrate(method, data.val32, data.val_labels).apply(data.logits16)
        assert np.all(p >= 0) and np.allclose(p.sum(axis=1), 1.0, atol=1e-9), method


def test_save_refuses_to_overwrite(data, tmp_path):
    cal = decal.calibrate("temperature", data.val32, data.val_labels)
    path = tmp_path / "cal.json"
    cal.save(path)
    first = path.read_text()
    with pytest.raises(FileExistsError, match="^path: "):
        cal.save(path)
    assert path.read_text() == first
    cal.save(path, overwrite=True)
