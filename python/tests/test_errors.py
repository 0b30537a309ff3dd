"""Bad input raises TypeError/ValueError whose message starts with the argument's name and says what is
wrong; nothing crosses the boundary as a panic, and nothing is written on failure."""

from __future__ import annotations

import numpy as np
import pytest

import decal

Z = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0], [0.5, 0.2, 4.0], [1.0, 0.0, 0.0]], dtype=np.float32)
Y = np.array([0, 1, 2, 1])


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(logits=np.array([[object(), 1]], dtype=object), labels=[0]), TypeError, r"^logits: .*dtype object"),
        (dict(logits=np.array([["a", "b"]]), labels=[0]), TypeError, r"^logits: .*dtype <U1"),
        (dict(logits=np.ones((4, 3), dtype=bool), labels=Y), TypeError, r"^logits: .*dtype bool"),
        (dict(logits=Z.astype(np.complex64), labels=Y), TypeError, r"^logits: .*complex64"),
        (dict(logits=Z[0], labels=Y), ValueError, r"^logits: expected a 2-D \[N, K\] array, got shape \(3,\)"),
        (dict(logits=Z[None], labels=Y), ValueError, r"^logits: expected a 2-D"),
        (dict(logits=np.zeros((0, 3), np.float32), labels=[]), ValueError, r"^logits: empty array"),
        (dict(logits=Z, labels=Y[:3]), ValueError, r"^labels: has 3 labels but logits has 4 rows"),
        (dict(logits=Z, labels=Y.reshape(2, 2)), ValueError, r"^labels: expected labels of shape \[N\]"),
        (dict(logits=Z, labels=np.array(["a", "b", "c", "d"])), TypeError, r"^labels: expected integer"),
        (dict(logits=Z, labels=Y.astype(bool)), TypeError, r"^labels: expected integer"),
        (dict(logits=Z, labels=[0, 1, 2.5, 1]), ValueError, r"^labels: element 2 is 2.5, not an integer"),
        (dict(logits=Z, labels=[0, 1, np.nan, 1]), ValueError, r"^labels: element 2 is nan"),
        (dict(logits=Z, labels=[0, 1, 3, 1]), ValueError, r"^labels: label of row 2 is 3, outside \[0, 3\)"),
        (dict(logits=Z, labels=[0, -1, 2, 1]), ValueError, r"^labels: label of row 1 is -1"),
        (dict(logits=np.where(Z == 3.0, np.nan, Z), labels=Y), ValueError,
         r"^logits: logits row 1, column 1 is NaN \(must be finite\)"),
        (dict(logits=np.where(Z == 4.0, np.inf, Z), labels=Y), ValueError, r"^logits: .*row 2, column 2 is inf"),
        (dict(probs=np.full((4, 3), 0.5), labels=Y), ValueError,
         r"^probs: probabilities row 0 is not a probability vector: sums to 1.5"),
        (dict(probs=np.array([[1.2, -0.2, 0.0]] * 4), labels=Y), ValueError, r"^probs: .*outside \[0, 1\]"),
        (dict(logits=Z, probs=Z, labels=Y), ValueError, r"give only one of logits= and probs="),
        (dict(labels=Y), ValueError, r"give logits= .* or probs="),
        (dict(logits=Z), ValueError, r"^labels: required"),
        (dict(logits=Z, labels=Y, ood_logits=np.ones((2, 4))), ValueError, r"^ood_logits: has 4 classes but logits has 3"),
        (dict(logits=Z, labels=Y, ood_logits=np.array([[np.nan, 0, 0]])), ValueError, r"^ood_logits: ood row 0, column 0 is NaN"),
        (dict(logits=Z, labels=Y, profile="fancy"), ValueError, r"^profile: unknown profile 'fancy'"),
        (dict(logits=Z, labels=Y, bins=0), ValueError, r"^bins: "),
        (dict(logits=Z, labels=Y, membership="left"), ValueError, r"^membership: unknown membership 'left'"),
        (dict(logits=Z, labels=Y, ood_score="odin"), ValueError, r"^ood_score: unknown OOD score 'odin'"),
        (dict(logits=Z, labels=Y, fpr95="x"), ValueError, r"^fpr95: unknown convention 'x'"),
        (dict(logits=Z, labels=Y, bootstrap=0), ValueError, r"^bootstrap: "),
        (dict(logits=Z, labels=Y, bootstrap=5, confidence=1.5), ValueError, r"^confidence: must be in \(0, 1\)"),
        (dict(logits=Z, labels=Y, prob_tolerance=-1.0), ValueError, r"^prob_tolerance: must be a positive number"),
        (dict(logits=[[1.0, 2.0], [3.0]], labels=[0, 1]), TypeError, r"^logits: cannot be converted"),
    ],
)
def test_metrics_bad_input(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        decal.metrics(**kwargs)


def test_streaming_errors_count_rows_from_the_start():
    acc = decal.MetricAccumulator(3)
    acc.update(Z, Y)
    with pytest.raises(ValueError, match=r"^labels: label of row 5 is 7"):
        acc.update(Z[:2], [0, 7])
    bad = Z.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"^logits: logits row 5, column 2 is NaN"):
        acc.update(bad, Y)
    with pytest.raises(ValueError, match=r"^logits: has 4 columns but the accumulator was made for 3"):
        acc.update(np.ones((2, 4)), [0, 1])
    with pytest.raises(ValueError, match=r"^ood_logits: .*without ood=True"):
        acc.update_ood(Z)
    # A rejected chunk adds nothing.
    assert acc.rows == 4
    assert acc.compute()["n"] == 4


def test_accumulator_state_errors():
    with pytest.raises(ValueError, match="no predictions were added"):
        decal.MetricAccumulator(3).compute()
    acc = decal.MetricAccumulator(3, ood=True)
    acc.update(Z, Y)
    with pytest.raises(ValueError, match="no out-of-distribution predictions"):
        acc.compute()
    with pytest.raises(ValueError, match=r"^num_classes: "):
        decal.MetricAccumulator(0)
    with pytest.raises(ValueError, match=r"^num_classes: "):
        decal.MetricAccumulator("3")


def test_calibrate_bad_input():
    with pytest.raises(ValueError, match=r"^method: unknown method 'platt'"):
        decal.calibrate("platt", Z, Y)
    with pytest.raises(ValueError, match=r"^val_labels: has 2 labels but val_logits has 4 rows"):
        decal.calibrate("temperature", Z, Y[:2])
    with pytest.raises(ValueError, match=r"^val_labels: label of row 2 is 5"):
        decal.calibrate("vector", Z, [0, 1, 5, 1])
    with pytest.raises(ValueError, match=r"^val_labels: all 4 labels are class 1"):
        decal.calibrate("temperature", Z, [1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"^val_logits .*row 0, column 0 is NaN"):
        decal.calibrate("isotonic", np.where(Z == 2.0, np.nan, Z), Y)
    with pytest.raises(TypeError, match=r"^val_logits: "):
        decal.calibrate("temperature", np.array([["x"]]), [0])
    cal = decal.calibrate("temperature", Z, Y)
    with pytest.raises(ValueError, match=r"^logits: calibrator was fitted for 3 classes but the input has 2"):
        cal.apply(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"^logits: .*row 0, column 1 is inf"):
        cal.apply(np.array([[0.0, np.inf, 0.0]]))
    with pytest.raises(ValueError, match=r"^text: not valid JSON"):
        decal.Calibrator.from_json("{nope")
    with pytest.raises(ValueError, match=r"^text: not a decal calibrator"):
        decal.Calibrator.from_json('{"method": "platt"}')
    with pytest.raises(TypeError, match=r"^text: expected JSON text"):
        decal.Calibrator.from_json(b"{}")


def test_reliability_bad_path_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"^path: directory .* does not exist"):
        decal.reliability_diagram(Z, Y, tmp_path / "missing" / "r.svg")
    with pytest.raises(ValueError, match=r"^labels: label of row 0 is 9"):
        decal.reliability_diagram(Z, [9, 1, 2, 1], tmp_path / "r")
    assert list(tmp_path.iterdir()) == []


def test_reliability_refuses_existing_files(tmp_path):
    decal.reliability_diagram(Z, Y, tmp_path / "r")
    before = (tmp_path / "r.csv").read_bytes()
    with pytest.raises(FileExistsError, match=r"^path: .*r.svg"):
        decal.reliability_diagram(Z[:2], Y[:2], tmp_path / "r.png")
    assert (tmp_path / "r.csv").read_bytes() == before
    decal.reliability_diagram(Z[:2], Y[:2], tmp_path / "r.png", overwrite=True)
    assert (tmp_path / "r.csv").read_bytes() != before


def test_loaded_calibrators_are_validated():
    cal = decal.calibrate("temperature", Z, Y)
    params = cal.params
    for bad_t in (0.0, -1.0):
        params["temperature"] = bad_t
        with pytest.raises(ValueError, match=r"^text: .*temperature"):
            decal.Calibrator.from_json(__import__("json").dumps({"calibrator": params}))
