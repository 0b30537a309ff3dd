"""decal.metrics and decal.MetricAccumulator: identical to `decal metrics --json` on the same .npy files,
streaming identical to one-shot, every input dtype, reliability diagrams as the CLI draws them."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import decal
from conftest import cli_metrics, run_cli, without_inputs

# (python keyword arguments, CLI flags); data attributes are resolved in the test.
CASES = {
    "paper-f32-ood": (
        dict(logits="logits32", profile="paper", ood_logits="ood32"),
        ["--logits", "logits32", "--profile", "paper", "--ood-logits", "ood32"],
    ),
    "default-f64-ood-bootstrap": (
        dict(logits="logits64", ood_logits="ood32", bootstrap=40, seed=3, confidence=0.9),
        ["--logits", "logits64", "--ood-logits", "ood32", "--bootstrap", "40", "--seed", "3",
         "--confidence", "0.9"],
    ),
    "overrides": (
        dict(logits="logits32", profile="paper", bins=20, membership="guo", ood_logits="ood32",
             ood_score="energy", fpr95="oodpos-first"),
        ["--logits", "logits32", "--profile", "paper", "--bins", "20", "--membership", "guo",
         "--ood-logits", "ood32", "--ood-score", "energy", "--fpr95", "oodpos-first"],
    ),
    "probs-paper-ood-probs": (
        dict(probs="probs", profile="paper", ood_probs="ood_probs"),
        ["--probs", "probs", "--profile", "paper", "--ood-probs", "ood_probs"],
    ),
    "probs-max-logit-warning": (
        dict(probs="probs", ood_probs="ood_probs", ood_score="max-logit"),
        ["--probs", "probs", "--ood-probs", "ood_probs", "--ood-score", "max-logit"],
    ),
    "f16-no-ece-em": (
        dict(logits="logits16", ece_em=False, membership="histogram"),
        ["--logits", "logits16", "--no-ece-em", "--membership", "histogram"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_metrics_equal_cli_json(case, data, decal_bin, tmp_path):
    kwargs, flags = CASES[case]
    py_kwargs = {k: (getattr(data, v) if isinstance(v, str) and hasattr(data, v) else v)
                 for k, v in kwargs.items()}
    cli_flags = [str(getattr(data, f + "_path")) if hasattr(data, f + "_path") else f for f in flags]
    cli = cli_metrics(decal_bin, tmp_path, *cli_flags, "--labels", data.labels_path)
    py = decal.metrics(labels=data.labels, **py_kwargs)
    assert set(py) == set(cli)
    assert set(py["inputs"]) == set(cli["inputs"])
    assert py["inputs"]["kind"] == cli["inputs"]["kind"]
    # Every number, bin and definition string identical (exact float equality).
    assert without_inputs(py) == without_inputs(cli)
    assert py["definitions"]["profile"] == cli["definitions"]["profile"]


def test_label_dtypes_give_identical_results(data):
    ref = without_inputs(decal.metrics(logits=data.logits32, labels=data.labels))
    for labels in (data.labels_u8, data.labels.astype(np.int16), data.labels.astype(np.float64),
                   data.labels[:, None], data.labels.tolist()):
        assert without_inputs(decal.metrics(logits=data.logits32, labels=labels)) == ref


def test_score_dtypes_are_widened_exactly(data):
    # float32 read in place and float64 widened from it are the same numbers.
    a = without_inputs(decal.metrics(logits=data.logits32, labels=data.labels, profile="paper"))
    b = without_inputs(decal.metrics(logits=data.logits32.astype(np.float64), labels=data.labels,
                                     profile="paper"))
    assert a == b
    # Non-contiguous and Fortran-ordered views are copied to C order, not misread.
    c = without_inputs(decal.metrics(logits=np.asfortranarray(data.logits32), labels=data.labels,
                                     profile="paper"))
    assert c == a
    wide = np.zeros((data.logits32.shape[0], 2 * data.k), dtype=np.float32)
    wide[:, ::2] = data.logits32
    assert without_inputs(decal.metrics(logits=wide[:, ::2], labels=data.labels, profile="paper")) == a
    # Integer logits are accepted (converted to float64).
    ints = np.rint(data.logits64).astype(np.int32)
    assert without_inputs(decal.metrics(logits=ints, labels=data.labels)) == without_inputs(
        decal.metrics(logits=ints.astype(np.float64), labels=data.labels))


def _chunks(n, sizes):
    i = 0
    for s in sizes:
        if i >= n:
            return
        yield slice(i, min(n, i + s))
        i += s
    if i < n:
        yield slice(i, n)


@pytest.mark.parametrize("sizes", [[1] * 50 + [7] * 30, [1000, 1000, 1000], [2999, 1], [3000]])
def test_streaming_equals_one_shot(data, sizes):
    kwargs = dict(profile="default", bootstrap=25, seed=1)
    one = decal.metrics(logits=data.logits32, labels=data.labels, ood_logits=data.ood32, **kwargs)
    acc = decal.MetricAccumulator(data.k, ood=True, **kwargs)
    for s in _chunks(len(data.labels), sizes):
        acc.update(data.logits32[s], data.labels[s])
    for s in _chunks(len(data.ood32), [500, 1, 699]):
        acc.update_ood(data.ood32[s])
    assert acc.rows == len(data.labels)
    assert without_inputs(acc.compute()) == without_inputs(one)
    # compute() leaves the state usable: more rows change the result, as they should.
    acc.update(data.logits32[:10], data.labels[:10])
    assert acc.compute()["n"] == len(data.labels) + 10


def test_streaming_probs_paper_equals_cli(data, decal_bin, tmp_path):
    cli = cli_metrics(decal_bin, tmp_path, "--probs", data.probs_path, "--labels", data.labels_path,
                      "--profile", "paper")
    acc = decal.MetricAccumulator(data.k, probs=True, profile="paper")
    for s in _chunks(len(data.labels), [333] * 10):
        acc.update(data.probs[s], data.labels[s])
    assert without_inputs(acc.compute()) == without_inputs(cli)


def test_torch_tensors_via_array_protocol(data):
    torch = pytest.importorskip("torch")
    ref = without_inputs(decal.metrics(logits=data.logits32, labels=data.labels, profile="paper"))
    got = decal.metrics(logits=torch.from_numpy(data.logits32), labels=torch.from_numpy(data.labels),
                        profile="paper")
    assert without_inputs(got) == ref
    with pytest.raises(TypeError, match=r"^logits: .*detach"):
        decal.metrics(logits=torch.from_numpy(data.logits32).requires_grad_(), labels=data.labels)
    with pytest.raises(TypeError, match=r"^logits: "):
        decal.metrics(logits=torch.from_numpy(data.logits32).to(torch.bfloat16), labels=data.labels)


def test_reliability_diagram_matches_cli(data, decal_bin, tmp_path):
    run_cli(decal_bin, "metrics", "--logits", data.logits32_path, "--labels", data.labels_path,
            "--profile", "paper", "--threads", "1", "--reliability", tmp_path / "cli")
    paths = decal.reliability_diagram(data.logits32, data.labels, tmp_path / "py.svg", profile="paper")
    assert paths == [str(tmp_path / "py.svg"), str(tmp_path / "py.png"), str(tmp_path / "py.csv")]
    # The bins (written losslessly to the CSV) are the CLI's, byte for byte.
    assert (tmp_path / "py.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()
    assert (tmp_path / "py.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "py.svg").read_text()
    assert svg.lstrip().startswith("<svg") and "Reliability (paper)" in svg
    # The accumulator draws the same bins.
    acc = decal.MetricAccumulator(data.k, profile="paper")
    acc.update(data.logits32, data.labels)
    acc.reliability_diagram(tmp_path / "acc")
    assert (tmp_path / "acc.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()


def test_docstring_examples_run():
    result = doctest.testmod(decal, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 20
    assert result.failed == 0


def test_float32_and_float64_inputs_are_not_copied(data):
    from decal import _scores

    for a in (data.logits32, data.logits64):
        assert _scores(a, "logits") is a
    assert not np.shares_memory(_scores(data.logits16, "logits"), data.logits16)
    assert _scores(data.logits16, "logits").dtype == np.float32
