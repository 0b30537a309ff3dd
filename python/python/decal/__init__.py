"""decal from Python: calibration metrics with named definitions, exact post-hoc calibrators and
reliability diagrams, computed by decal's Rust core (the same code as the ``decal`` command line).

* :func:`metrics` -- accuracy, ECE/MCE/RMSCE, equal-mass and classwise ECE, NLL, Brier, OOD detection,
  bootstrap intervals; returns the dict that ``decal metrics --json`` writes, ``definitions`` included.
* :class:`MetricAccumulator` -- the same numbers from chunks (bounded memory, identical results).
* :func:`calibrate` -- temperature / vector scaling, histogram binning, isotonic regression, fitted on
  validation logits; returns a :class:`Calibrator` with ``apply``, ``to_json`` and ``from_json``.
* :func:`reliability_diagram` -- SVG + PNG + CSV reliability diagram.

Inputs are NumPy arrays of any float or integer dtype, torch tensors (through ``__array__``, i.e.
``numpy.asarray``; CPU tensors without grad) or nested lists. float32 and float64 arrays that are already
C-contiguous are read in place (no copy). Bad input raises ``TypeError`` or ``ValueError`` whose message
starts with the argument's name.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import _native

__all__ = [
    "metrics",
    "MetricAccumulator",
    "calibrate",
    "Calibrator",
    "reliability_diagram",
    "__version__",
]

__version__: str = _native.__version__

_MAX_EXACT_INT = 2**53


# --------------------------------------------------------------------------------------------------
# Input conversion (zero-copy for C-contiguous float32/float64; every error names the argument)
# --------------------------------------------------------------------------------------------------


def _as_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as e:  # torch tensors on a GPU or with grad, ragged lists, ...
        hint = ""
        if type(x).__module__.startswith("torch"):
            hint = " (for a torch tensor pass x.detach().cpu(); bfloat16 needs x.float())"
        raise TypeError(
            f"{name}: cannot be converted to a NumPy array ({type(x).__name__}: {e}){hint}"
        ) from None


def _scores(x: Any, name: str) -> np.ndarray:
    """A C-contiguous float32/float64 ``[N, K]`` array (the input itself when it already is one)."""
    a = _as_array(x, name)
    kind = a.dtype.kind
    if kind == "f":
        if a.dtype.itemsize < 4:  # float16: exactly representable in float32
            a = a.astype(np.float32)
        elif a.dtype.itemsize > 8:  # long double
            a = a.astype(np.float64)
    elif kind in "iu":
        if a.size and np.abs(a).max() > _MAX_EXACT_INT:
            raise ValueError(f"{name}: integer values above 2**53 cannot be represented exactly as float64")
        a = a.astype(np.float64)
    else:
        raise TypeError(
            f"{name}: expected a float (or integer) array of scores, got dtype {a.dtype}"
        )
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D [N, K] array, got shape {tuple(a.shape)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: empty array of shape {tuple(a.shape)}")
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder not in "=|":  # big-endian data: native copy
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def _labels(y: Any, name: str, rows: Optional[int] = None, rows_of: str = "") -> np.ndarray:
    """A contiguous int64 ``[N]`` array; integer dtypes as they are, floats only when they hold integers."""
    a = _as_array(y, name)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name}: expected labels of shape [N], got shape {tuple(a.shape)}")
    kind = a.dtype.kind
    if kind == "i":
        a = a.astype(np.int64, copy=False)
    elif kind == "u":
        if a.size and a.max() > np.iinfo(np.int64).max:
            i = int(np.argmax(a))
            raise ValueError(f"{name}: label {i} is {a[i]}, not a class index")
        a = a.astype(np.int64)
    elif kind == "f":
        bad = ~np.isfinite(a) | (np.mod(a, 1) != 0) | (np.abs(a) > _MAX_EXACT_INT)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name}: element {i} is {a[i]}, not an integer class index")
        a = a.astype(np.int64)
    else:
        raise TypeError(f"{name}: expected integer class labels, got dtype {a.dtype}")
    if a.shape[0] == 0:
        raise ValueError(f"{name}: no labels (empty array)")
    if rows is not None and a.shape[0] != rows:
        raise ValueError(f"{name}: has {a.shape[0]} labels but {rows_of} has {rows} rows")
    return np.ascontiguousarray(a)


def _pick(first: Any, second: Any, names: Sequence[str], required: bool) -> Optional[tuple]:
    if first is not None and second is not None:
        raise ValueError(f"give only one of {names[0]}= and {names[1]}=")
    if first is not None:
        return ("logits", names[0], first)
    if second is not None:
        return ("probabilities", names[1], second)
    if required:
        raise ValueError(f"give {names[0]}= (logits) or {names[1]}= (probabilities)")
    return None


def _describe(a: np.ndarray) -> str:
    return f"numpy {a.dtype} array {list(a.shape)}"


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


class MetricAccumulator:
    r"""Streaming version of :func:`metrics`: feed ``[n, K]`` chunks with :meth:`update`, then
    :meth:`compute`.

    The state is decal's mergeable ``SummaryAccumulator`` -- the object ``decal metrics`` streams ``.npy``
    files through -- so the result is **identical** (bit for bit) to :func:`metrics` on the concatenated
    input, whatever the chunk sizes. Memory is O(M K) for the binned metrics, accuracy, NLL and Brier;
    equal-mass ECE keeps 9 bytes per row (turn it off with ``ece_em=False``), ``ood=True`` one float per row,
    ``bootstrap`` five values per row.

    Args:
        num_classes: K, the number of columns of every chunk.
        profile: ``"default"`` (15 bins, exact definitions) or ``"paper"`` (the seed's: 10 bins,
            torchmetrics membership, float32 softmax, sklearn-clipped NLL, Brier/K, interpolated FPR95).
            See :func:`metrics`.
        probs: ``True`` when the chunks hold probabilities instead of logits (rows checked to sum to 1).
        ood: ``True`` to compute OOD metrics; then add OOD chunks with :meth:`update_ood`.
        bins, membership, ood_score, fpr95, ece_em, prob_tolerance, bootstrap, seed, confidence: as in
            :func:`metrics`.

    Example:
        >>> import numpy as np, decal
        >>> rng = np.random.default_rng(0)
        >>> acc = decal.MetricAccumulator(num_classes=10, profile="paper")
        >>> for _ in range(4):
        ...     acc.update(rng.normal(size=(250, 10)).astype(np.float32), rng.integers(0, 10, 250))
        >>> result = acc.compute()
        >>> result["n"], result["definitions"]["profile"]
        (1000, 'paper')
    """

    def __init__(
        self,
        num_classes: int,
        *,
        profile: str = "default",
        probs: bool = False,
        ood: bool = False,
        bins: Optional[int] = None,
        membership: Optional[str] = None,
        ood_score: Optional[str] = None,
        fpr95: Optional[str] = None,
        ece_em: bool = True,
        prob_tolerance: Optional[float] = None,
        bootstrap: Optional[int] = None,
        seed: int = 0,
        confidence: float = 0.95,
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
        if bins is not None and (isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1):
            raise ValueError(f"bins: expected a positive integer, got {bins!r}")
        if bootstrap is not None and (
            isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 1
        ):
            raise ValueError(f"bootstrap: expected a positive number of resamples, got {bootstrap!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        self._kind = "probabilities" if probs else "logits"
        self._arg = "probs" if probs else "logits"
        self._inputs: Dict[str, Any] = {"predictions": [], "labels": [], "ood": [], "ood_kind": None}
        self._native = _native.Accumulator(
            int(num_classes),
            self._kind,
            profile,
            None if bins is None else int(bins),
            membership,
            ood_score,
            fpr95,
            bool(ece_em),
            None if prob_tolerance is None else float(prob_tolerance),
            bool(ood),
            None if bootstrap is None else int(bootstrap),
            int(seed),
            float(confidence),
        )

    def update(self, preds: Any, labels: Any) -> None:
        """Adds a chunk: ``preds`` ``[n, K]`` (logits, or probabilities when made with ``probs=True``) and
        ``labels`` ``[n]``. Validated like :func:`metrics`; error messages number rows from the first row
        ever added."""
        a = _scores(preds, self._arg)
        if a.shape[1] != self._native.num_classes:
            raise ValueError(
                f"{self._arg}: has {a.shape[1]} columns but the accumulator was made for "
                f"{self._native.num_classes} classes"
            )
        y = _labels(labels, "labels", a.shape[0], self._arg)
        self._native.update(a, y, self._arg, "labels")
        self._inputs["predictions"].append(a.dtype.name)

    def update_ood(self, ood_logits: Any = None, *, ood_probs: Any = None) -> None:
        """Adds a chunk of out-of-distribution predictions ``[n, K]`` (logits or probabilities)."""
        kind, name, x = _pick(ood_logits, ood_probs, ("ood_logits", "ood_probs"), True)
        a = _scores(x, name)
        self._native.update_ood(kind, a, name)
        self._inputs["ood"].append(a.dtype.name)

    def compute(self) -> Dict[str, Any]:
        """The metrics of everything added so far, as the dict :func:`metrics` returns. May be called
        again after more updates."""
        result = json.loads(self._native.compute_json())
        dtypes = sorted(set(self._inputs["predictions"]))
        result["inputs"] = {
            "kind": self._kind,
            "predictions": f"numpy {'/'.join(dtypes)} array(s), {self.rows} rows in {len(self._inputs['predictions'])} chunk(s)",
            "labels": f"int64 array(s), {self.rows} rows",
            "ood": (
                f"numpy array(s), {self._native.ood_rows} rows in {len(self._inputs['ood'])} chunk(s)"
                if self._inputs["ood"]
                else None
            ),
            "decal_version": __version__,
        }
        return result

    def reliability_diagram(self, path: "os.PathLike[str] | str", *, label: str = "predictions",
                            title: Optional[str] = None, overwrite: bool = False) -> List[str]:
        """Writes the reliability diagram of everything added so far (see :func:`reliability_diagram`)."""
        stem = _stem(path, overwrite)
        if title is None:
            title = f"Reliability ({self.profile})"
        return self._native.write_reliability(stem, label, title)

    @property
    def rows(self) -> int:
        """Number of rows added so far."""
        return self._native.rows

    @property
    def num_classes(self) -> int:
        """K."""
        return self._native.num_classes

    @property
    def profile(self) -> str:
        """The recorded profile name, e.g. ``paper`` or ``default(bins=20)``."""
        return self._native.profile

    def __repr__(self) -> str:
        return (
            f"MetricAccumulator(num_classes={self.num_classes}, profile={self.profile!r}, "
            f"kind={self._kind!r}, rows={self.rows})"
        )


def metrics(
    logits: Any = None,
    labels: Any = None,
    *,
    probs: Any = None,
    profile: str = "default",
    ood_logits: Any = None,
    ood_probs: Any = None,
    bins: Optional[int] = None,
    membership: Optional[str] = None,
    ood_score: Optional[str] = None,
    fpr95: Optional[str] = None,
    ece_em: bool = True,
    prob_tolerance: Optional[float] = None,
    bootstrap: Optional[int] = None,
    seed: int = 0,
    confidence: float = 0.95,
) -> Dict[str, Any]:
    r"""Calibration, proper-score and OOD metrics of a classifier's predictions, under a named profile.

    Computes, for predictions :math:`p_i = \mathrm{softmax}(z_i)` (or given probabilities) with top-label
    confidence :math:`c_i = \max_k p_{ik}`, prediction :math:`\hat y_i = \arg\max_k p_{ik}` and labels
    :math:`y_i`:

    * ``accuracy`` :math:`= \frac1N \sum_i 1[\hat y_i = y_i]` (ties go to the lowest index);
    * ``ece`` :math:`= \sum_m \frac{|B_m|}{N} |\mathrm{acc}(B_m) - \mathrm{conf}(B_m)|` over M equal-width
      confidence bins; ``mce`` the largest gap, ``rmsce`` the root-mean-square gap;
    * ``ece_em`` the same over M equal-mass bins; ``classwise_ece`` :math:`= \frac1K \sum_k \sum_m
      \frac{n_{km}}{N} |\mathrm{freq}_{km} - \mathrm{conf}_{km}|`;
    * ``nll`` :math:`= -\frac1N \sum_i \ln p_{i y_i}` (nats), ``brier`` :math:`= \frac1N \sum_i \sum_k
      (p_{ik} - 1[y_i = k])^2` and ``brier_div_k`` = brier / K;
    * with OOD input: ``auroc`` (ID positive, ties count half), ``fpr95`` (FPR at 95 % TPR), ``aupr_in``,
      ``aupr_out``, and every convention of each in ``ood``.

    Which definition produced each number is a **profile** (the exact text is returned in
    ``result["definitions"]``):

    ============  =====================================================  ==================================
    setting       ``"default"`` (recommended)                            ``"paper"`` (the seed's numbers)
    ============  =====================================================  ==================================
    bins M        15                                                     10
    membership    torchmetrics: [lo, hi) plus a bin for confidence 1.0   same
    softmax       float64                                                float32 arithmetic (torch.softmax)
    ``nll``       exact, via log-softmax                                 sklearn 1.1.3 clipped log_loss
    ``fpr95``     ID positive, exact threshold                           ID positive, interpolated
    AUPR          average precision                                      trapezoid
    ``ece_em``    tie-safe equal-mass bins                               not computed
    ============  =====================================================  ==================================

    All values are fractions (ECE is *not* multiplied by 100). The numbers are those of
    ``decal metrics --json`` on the same data: identical bit for bit to ``decal metrics --threads 1``
    (up to 262,144 rows; more threads or rows only re-associate floating-point sums, ~1e-16 relative).

    Args:
        logits: Unnormalised scores ``[N, K]`` (any float or integer dtype; float32/float64 read without a
            copy). decal applies the softmax. Give either ``logits`` or ``probs``.
        labels: Class indices ``[N]`` (or ``[N, 1]``), any integer dtype, values in ``[0, K)``.
        probs: Probabilities ``[N, K]`` instead of logits; each row must sum to 1 within
            ``prob_tolerance`` (1e-3) -- the failing row is named.
        profile: ``"default"`` or ``"paper"`` (table above).
        ood_logits: Logits ``[N_ood, K]`` of an out-of-distribution set; adds AUROC, AUPR, FPR@95TPR.
        ood_probs: Probabilities of the OOD set instead.
        bins: Override the profile's number of bins M (the profile name records it: ``paper(bins=15)``).
        membership: Override bin membership: ``"torchmetrics"``, ``"guo"`` ((lo, hi]) or ``"histogram"``.
        ood_score: ``"msp"`` (default), ``"max-logit"``, ``"energy"`` or ``"neg-entropy"``.
        fpr95: Convention reported as ``fpr95``: ``"idpos-exact"``, ``"idpos-interp"`` or
            ``"oodpos-first"`` (all three are always in ``result["ood"]``).
        ece_em: Compute equal-mass ECE (keeps one confidence per row).
        prob_tolerance: Tolerance on :math:`|\sum_k p_k - 1|` for ``probs`` rows.
        bootstrap: Percentile-bootstrap confidence intervals with this many resamples.
        seed: Seed of the bootstrap generator.
        confidence: Confidence level of the bootstrap intervals.

    Returns:
        The dict ``decal metrics --json`` writes: ``n``, ``num_classes``, ``accuracy``, ``ece``, ``mce``,
        ``rmsce``, ``ece_em``, ``classwise_ece``, ``nll``, ``brier``, ``brier_div_k``, ``alternatives``
        (``nll_exact``, ``nll_sklearn_clipped``), ``reliability`` (the bins), ``definitions`` (the text of
        every definition used) and ``inputs`` (what was given; array descriptions instead of file names); with OOD input also ``auroc``, ``fpr95``, ``aupr_in``,
        ``aupr_out`` and ``ood``; with ``bootstrap`` also ``bootstrap``; ``warnings`` when an option could
        not be honoured. Values are fractions; a non-finite value is the string ``"inf"``, ``"-inf"`` or
        ``"NaN"``, exactly as in the CLI's JSON.

    Raises:
        TypeError: an input is not numeric (object or string arrays, bool, ...).
        ValueError: wrong shape, NaN/Inf, a label outside ``[0, K)``, rows of probabilities that do not sum
            to 1, mismatched row counts, an unknown option. The message starts with the argument's name.

    Example:
        >>> import numpy as np, decal
        >>> rng = np.random.default_rng(0)
        >>> labels = rng.integers(0, 10, size=1000)
        >>> logits = rng.normal(size=(1000, 10)).astype(np.float32)
        >>> logits[np.arange(1000), labels] += 2.0
        >>> result = decal.metrics(logits=logits, labels=labels, profile="paper")
        >>> round(result["accuracy"], 3), result["definitions"]["num_bins"]
        (0.659, 10)
        >>> result["definitions"]["nll"][:18]
        'sklearn 1.1.3 log_'
    """
    kind, name, x = _pick(logits, probs, ("logits", "probs"), True)
    if labels is None:
        raise ValueError("labels: required")
    a = _scores(x, name)
    y = _labels(labels, "labels", a.shape[0], name)
    ood = _pick(ood_logits, ood_probs, ("ood_logits", "ood_probs"), False)
    acc = MetricAccumulator(
        a.shape[1],
        profile=profile,
        probs=kind == "probabilities",
        ood=ood is not None,
        bins=bins,
        membership=membership,
        ood_score=ood_score,
        fpr95=fpr95,
        ece_em=ece_em,
        prob_tolerance=prob_tolerance,
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
    )
    acc._native.update(a, y, name, "labels")
    inputs = {"kind": kind, "predictions": _describe(a), "labels": _describe(y), "ood": None}
    if ood is not None:
        ood_kind, ood_name, ood_x = ood
        o = _scores(ood_x, ood_name)
        if o.shape[1] != a.shape[1]:
            raise ValueError(
                f"{ood_name}: has {o.shape[1]} classes but {name} has {a.shape[1]}"
            )
        acc._native.update_ood(ood_kind, o, ood_name)
        inputs["ood"] = _describe(o)
    result = json.loads(acc._native.compute_json())
    inputs["decal_version"] = __version__
    result["inputs"] = inputs
    return result


# --------------------------------------------------------------------------------------------------
# Reliability diagrams
# --------------------------------------------------------------------------------------------------


def _stem(path: "os.PathLike[str] | str", overwrite: bool) -> str:
    p = os.fspath(path)
    if not isinstance(p, str):
        raise TypeError("path: expected a str or os.PathLike path")
    root, ext = os.path.splitext(p)
    if ext.lower() in (".svg", ".png", ".csv"):
        p = root
    parent = os.path.dirname(p) or "."
    if not os.path.isdir(parent):
        raise ValueError(f"path: directory {parent!r} does not exist")
    if not overwrite:
        existing = [p + e for e in (".svg", ".png", ".csv") if os.path.exists(p + e)]
        if existing:
            raise FileExistsError(f"path: {', '.join(existing)} already exist(s); pass overwrite=True to replace")
    return p


def reliability_diagram(
    logits: Any = None,
    labels: Any = None,
    path: "os.PathLike[str] | str | None" = None,
    *,
    probs: Any = None,
    profile: str = "default",
    bins: Optional[int] = None,
    membership: Optional[str] = None,
    label: str = "predictions",
    title: Optional[str] = None,
    overwrite: bool = False,
) -> List[str]:
    r"""Draws a reliability diagram: per-bin accuracy against mean confidence, the gap shaded, the
    diagonal of perfect calibration, a confidence histogram below and the ECE in the legend.

    The bins are the ECE bins of ``profile`` (``bins`` / ``membership`` override them), computed exactly as
    :func:`metrics` does; the figure is decal-report's, the same as ``decal metrics --reliability STEM``.

    Args:
        logits: Logits ``[N, K]`` (or give ``probs``).
        labels: Class indices ``[N]``.
        path: Where to write: ``STEM``, ``STEM.svg`` or ``STEM.png`` -- always writes ``STEM.svg``,
            ``STEM.png`` and ``STEM.csv`` (the bins, losslessly), each atomically. The directory must exist.
        probs: Probabilities ``[N, K]`` instead of logits.
        profile: ``"default"`` (15 bins) or ``"paper"`` (10 bins); see :func:`metrics`.
        bins: Number of equal-width bins M.
        membership: ``"torchmetrics"``, ``"guo"`` or ``"histogram"``.
        label: Legend label of the series.
        title: Figure title (default ``Reliability (<profile>)``).
        overwrite: Replace existing ``STEM.*`` files (without it they are refused before any work, as
            ``decal metrics --reliability`` refuses them without ``--force``).

    Returns:
        The paths written: ``[STEM.svg, STEM.png, STEM.csv]``.

    Example:
        >>> import numpy as np, decal, tempfile, os
        >>> rng = np.random.default_rng(0)
        >>> labels = rng.integers(0, 10, size=1000)
        >>> logits = rng.normal(size=(1000, 10)) + 3.0 * np.eye(10)[labels]
        >>> out = os.path.join(tempfile.mkdtemp(), "reliability.svg")
        >>> [os.path.basename(p) for p in decal.reliability_diagram(logits, labels, out, profile="paper")]
        ['reliability.svg', 'reliability.png', 'reliability.csv']
    """
    if path is None:
        raise ValueError("path: required (STEM, STEM.svg or STEM.png)")
    stem = _stem(path, overwrite)
    kind, name, x = _pick(logits, probs, ("logits", "probs"), True)
    if labels is None:
        raise ValueError("labels: required")
    a = _scores(x, name)
    y = _labels(labels, "labels", a.shape[0], name)
    acc = MetricAccumulator(
        a.shape[1], profile=profile, probs=kind == "probabilities", bins=bins, membership=membership,
        ece_em=False,
    )
    acc._native.update(a, y, name, "labels")
    if title is None:
        title = f"Reliability ({acc.profile})"
    return acc._native.write_reliability(stem, label, title)


# --------------------------------------------------------------------------------------------------
# Calibrators
# --------------------------------------------------------------------------------------------------

_METHODS = ("temperature", "temperature-lbfgs", "vector", "histogram", "isotonic")


class Calibrator:
    r"""A fitted post-hoc calibrator (make one with :func:`calibrate` or :meth:`from_json`).

    It is decal's ``decal_calib::Calibrator``: :meth:`apply` gives the probabilities
    ``decal calibrate`` writes to ``test_probs.npy`` and :meth:`to_json` the record it writes to
    ``calibrator.json`` -- files from either side load in the other (``decal calibrate --apply FILE``).

    Attributes:
        method: ``"temperature"`` (exact or LBFGS fit; see ``params["fit_method"]``), ``"vector"``,
            ``"histogram"`` or ``"isotonic"``.
        num_classes: K it was fitted for.
        temperature: The fitted T for temperature scaling, else ``None``.
        params: The fitted parameters as a dict (the ``calibrator`` object of the JSON record).
    """

    def __init__(self, native: Any) -> None:
        if not isinstance(native, _native.NativeCalibrator):
            raise TypeError("use decal.calibrate(...) or decal.Calibrator.from_json(...)")
        self._native = native

    def apply(self, logits: Any) -> np.ndarray:
        """Calibrated probabilities ``[N, K]`` (float64) for logits ``[N, K]`` (histogram and isotonic
        calibrators apply the softmax first, as when they were fitted)."""
        return self._native.apply(_scores(logits, "logits"), "logits")

    def to_json(self) -> str:
        """The JSON record ``decal calibrate --out DIR`` writes as ``DIR/calibrator.json``."""
        return self._native.to_json()

    def save(self, path: "os.PathLike[str] | str", *, overwrite: bool = False) -> None:
        """Writes :meth:`to_json` to ``path`` atomically; refuses an existing file unless ``overwrite``."""
        p = os.fspath(path)
        if os.path.exists(p) and not overwrite:
            raise FileExistsError(f"path: {p} already exists; pass overwrite=True to replace it")
        self._native.save(p)

    @classmethod
    def from_json(cls, text: str) -> "Calibrator":
        """Loads a calibrator from :meth:`to_json` text, a ``calibrator.json`` of ``decal calibrate``, or a
        bare calibrator object. Pass the text (``open(path).read()``), not the path."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected JSON text (str), got {type(text).__name__}")
        return cls(_native.NativeCalibrator.from_json(text))

    @property
    def method(self) -> str:
        """The method tag: temperature, vector, histogram or isotonic."""
        return self._native.method

    @property
    def num_classes(self) -> int:
        """K, the number of classes it was fitted for."""
        return self._native.num_classes

    @property
    def temperature(self) -> Optional[float]:
        """The fitted temperature T (temperature scaling only, else None)."""
        return self._native.temperature

    @property
    def params(self) -> Dict[str, Any]:
        """The fitted parameters (the ``calibrator`` object of the JSON record) as a dict."""
        return json.loads(self._native.params_json())

    def __repr__(self) -> str:
        return f"Calibrator({self._native.describe()})"


def calibrate(method: str, val_logits: Any, val_labels: Any) -> Calibrator:
    r"""Fits a post-hoc calibrator on validation logits (disjoint from the test set), as
    ``decal calibrate --method METHOD``.

    ======================  ===================  ============================================================
    method                  calibrates           fitted by
    ======================  ===================  ============================================================
    ``temperature``         logits               exact NLL optimum over T: :math:`p = \mathrm{softmax}(z/T)`
    ``temperature-lbfgs``   logits               the seed's torch.optim.LBFGS (T0 = 1.5, lr 0.01, 50 iters)
    ``vector``              logits               per-class scale and bias :math:`\mathrm{softmax}(w \odot z
                                                 + b)`, Newton on the NLL
    ``histogram``           softmax probs        one-vs-rest equal-width histogram binning, 15 bins, rows
                                                 renormalised
    ``isotonic``            softmax probs        one-vs-rest isotonic regression (scikit-learn semantics),
                                                 rows renormalised
    ======================  ===================  ============================================================

    Args:
        method: One of the methods above.
        val_logits: Validation logits ``[N, K]`` (any float or integer dtype; widened to float64).
        val_labels: Validation labels ``[N]``, values in ``[0, K)``, at least two classes present.

    Returns:
        A :class:`Calibrator`: ``.apply(logits)`` returns probabilities, ``.to_json()`` the record
        ``decal calibrate`` saves.

    Raises:
        TypeError, ValueError: bad input (message starts with the argument's name), or a fit without an
            optimum (e.g. validation logits no better than uniform for temperature scaling).

    Example:
        >>> import numpy as np, decal
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 10, size=2000)
        >>> z = 3.0 * (rng.normal(size=(2000, 10)) + 2.0 * np.eye(10)[y])  # over-confident logits
        >>> cal = decal.calibrate("temperature", z[:1000], y[:1000])
        >>> cal.temperature > 1.0
        True
        >>> probs = cal.apply(z[1000:])
        >>> before = decal.metrics(logits=z[1000:], labels=y[1000:])["nll"]
        >>> after = decal.metrics(probs=probs, labels=y[1000:])["nll"]
        >>> after < before
        True
    """
    if method not in _METHODS:
        raise ValueError(f"method: unknown method {method!r} (use one of {', '.join(_METHODS)})")
    z = _scores(val_logits, "val_logits")
    y = _labels(val_labels, "val_labels", z.shape[0], "val_logits")
    return Calibrator(_native.fit_calibrator(method, z, y))
