"""Shared fixtures: the `decal` CLI binary and .npy inputs written once per session.

The CLI is target/release/decal (or $DECAL_BIN). scripts/test builds it before running pytest; when it is
missing the tests that compare against it fail (they never skip), so a broken setup cannot pass silently.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def decal_bin() -> Path:
    path = Path(os.environ.get("DECAL_BIN", REPO / "target" / "release" / "decal"))
    if not path.is_file():
        pytest.fail(
            f"{path} does not exist: build the CLI with `scripts/cargo build --release -p decal-cli` "
            "(or set DECAL_BIN)"
        )
    return path


def run_cli(decal_bin: Path, *args: object) -> str:
    proc = subprocess.run(
        [str(decal_bin), *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"decal {' '.join(map(str, args))} failed:\n{proc.stderr}"
    return proc.stdout


def cli_metrics(decal_bin: Path, tmp: Path, *args: object) -> dict:
    """`decal metrics ... --threads 1 --json OUT` parsed (what the Python package must reproduce)."""
    out = tmp / f"cli-{len(list(tmp.iterdir()))}.json"
    run_cli(decal_bin, "metrics", *args, "--threads", "1", "--json", out)
    with open(out) as f:
        return json.load(f)


def without_inputs(d: dict) -> dict:
    d = dict(d)
    d.pop("inputs", None)
    return d


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> SimpleNamespace:
    """A 10-class problem with the awkward cases in it: over-confident rows that saturate float32 softmax
    to exactly 1.0 (paper profile's extra bin), exact ties between classes, a validation/test split and an
    OOD set drawn from a flatter distribution."""
    rng = np.random.default_rng(12)
    k = 10

    def draw(n: int, signal: float, scale: float):
        y = rng.integers(0, k, size=n)
        z = rng.normal(size=(n, k)) + signal * np.eye(k)[y]
        z *= scale
        return z, y

    z, y = draw(3000, 2.0, 2.5)
    z[:40] = 0.0
    z[:40, 0] = 30.0  # confidence 1.0 after float32 rounding
    z[40:60] = 1.0  # all-equal rows: ties, argmax -> class 0
    ood, _ = draw(1200, 0.5, 2.0)
    val_z, val_y = draw(1500, 2.0, 2.5)

    d = tmp_path_factory.mktemp("npy")
    ns = SimpleNamespace(dir=d, k=k)
    ns.logits32 = z.astype(np.float32)
    ns.logits64 = z
    ns.logits16 = z.astype(np.float16)
    ns.labels = y.astype(np.int64)
    ns.labels_u8 = y.astype(np.uint8)
    ns.probs = _softmax(z)
    ns.ood32 = ood.astype(np.float32)
    ns.ood_probs = _softmax(ood)
    ns.val32 = val_z.astype(np.float32)
    ns.val_labels = val_y.astype(np.int32)
    for name in ("logits32", "logits64", "logits16", "labels", "labels_u8", "probs", "ood32", "ood_probs",
                 "val32", "val_labels"):
        path = d / f"{name}.npy"
        np.save(path, getattr(ns, name))
        setattr(ns, f"{name}_path", path)
    return ns
