//! `decal metrics`: calibration, proper-score and OOD metrics from saved logits or probabilities.
//!
//! Inputs are `.npy` (streamed in chunks with bounded memory), `.npz` (choose arrays with `--key` /
//! `--labels-key`) or `.csv`. Whether a matrix holds logits or probabilities is never guessed: the flag says
//! which, and probability rows are checked to sum to 1. Every number is computed by
//! `decal_metrics::summary` (the same code `decal eval` and the experiment runner use) under a named profile,
//! and the JSON output carries a `definitions` object naming every definition used.
//!
//! float32/float64 `.npy` predictions and int64 labels are memory-mapped window by window and read without
//! copying; each window is computed in fixed blocks of rows on all available cores (each block fills its own
//! mergeable accumulator; the blocks are merged in row order), so the result is bit-identical to
//! `decal_metrics::evaluate` on the whole arrays whatever the thread count.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use decal_io::mmap::MappedNpy;
use decal_io::npy::{DType, NpyReader};
use decal_metrics::binning::Membership;
use decal_metrics::bootstrap::BootstrapConfig;
use decal_metrics::profile::{Fpr95Convention, OodScore, Profile};
use decal_metrics::summary::{
    EvalOptions, KeepRows, ScoreKind, Summary, SummaryAccumulator, Values, BLOCK_ROWS,
};

/// Arguments of `decal metrics`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("predictions").required(true).args(["logits", "probs"])))]
#[command(group(clap::ArgGroup::new("ood").required(false).args(["ood_logits", "ood_probs"])))]
pub struct Args {
    /// Logits, shape [N, K] (float16/32/64), as .npy, .npz or .csv. Softmax is applied by decal.
    #[arg(long, value_name = "FILE")]
    pub logits: Option<PathBuf>,
    /// Probabilities, shape [N, K]; every row must sum to 1 within --prob-tolerance (the failing row is named).
    #[arg(long, value_name = "FILE")]
    pub probs: Option<PathBuf>,
    /// Integer class labels, shape [N] (or [N, 1]), any integer dtype, values in [0, K).
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Array name inside an .npz given to --logits/--probs (optional when the archive holds one array).
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// Array name inside an .npz given to --labels.
    #[arg(long, value_name = "NAME")]
    pub labels_key: Option<String>,
    /// Metric profile: `paper` (the seed's definitions: 10 bins, torchmetrics membership, float32 softmax,
    /// sklearn-clipped NLL, interpolated FPR95, ECE shown x100) or `default` (15 bins, exact definitions).
    #[arg(long, default_value = "default", value_parser = ["paper", "default"])]
    pub profile: String,
    /// Override the number of equal-width bins M of the profile.
    #[arg(long, value_name = "M")]
    pub bins: Option<usize>,
    /// Override the bin-membership convention: `torchmetrics` ([lo,hi) + a bin for confidence == 1.0),
    /// `guo` ((lo,hi]) or `histogram` ([lo,hi), last bin closed).
    #[arg(long, value_parser = ["torchmetrics", "guo", "histogram"])]
    pub membership: Option<String>,
    /// Logits of an out-of-distribution set, shape [N_ood, K]; adds AUROC, AUPR and FPR@95TPR.
    #[arg(long, value_name = "FILE")]
    pub ood_logits: Option<PathBuf>,
    /// Probabilities of an out-of-distribution set, shape [N_ood, K].
    #[arg(long, value_name = "FILE")]
    pub ood_probs: Option<PathBuf>,
    /// Array name inside an .npz given to --ood-logits/--ood-probs.
    #[arg(long, value_name = "NAME")]
    pub ood_key: Option<String>,
    /// OOD score (larger = more in-distribution): msp, max-logit, energy (T = 1) or neg-entropy.
    /// Default: the profile's (msp).
    #[arg(long, value_parser = ["msp", "max-logit", "energy", "neg-entropy"])]
    pub ood_score: Option<String>,
    /// FPR@95TPR convention reported as `fpr95`: idpos-exact, idpos-interp (paper) or oodpos-first (OpenOOD).
    /// All three are always in the JSON's `ood` object.
    #[arg(long, value_parser = ["idpos-exact", "idpos-interp", "oodpos-first"])]
    pub fpr95: Option<String>,
    /// Percentile-bootstrap confidence intervals with this many resamples (keeps 5 values per row in memory).
    #[arg(long, value_name = "N")]
    pub bootstrap: Option<usize>,
    /// Seed of the bootstrap generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Confidence level of the bootstrap intervals.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Skip equal-mass ECE (it keeps one confidence per row in memory; without it memory is independent of N
    /// unless OOD or bootstrap are requested).
    #[arg(long)]
    pub no_ece_em: bool,
    /// Tolerance on |sum_k p_k - 1| for --probs rows.
    #[arg(long, value_name = "TOL")]
    pub prob_tolerance: Option<f64>,
    /// Write the full result (all metrics, reliability bins, definitions, inputs) as JSON to this file.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Write a reliability diagram to STEM.svg, STEM.png and STEM.csv.
    #[arg(long, value_name = "STEM")]
    pub reliability: Option<PathBuf>,
    /// Replace existing --json / --reliability outputs (without it an existing file is refused before any
    /// work; outputs are staged and renamed into place together once every one is written).
    #[arg(long)]
    pub force: bool,
    /// Worker threads (default: all available cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Rows read from disk per chunk (memory/throughput trade-off; exposed for tests).
    #[arg(long, value_name = "ROWS", default_value_t = DEFAULT_CHUNK_ROWS, hide = true)]
    pub chunk_rows: usize,
}

/// Builds the profile from `--profile` and its overrides; the name records every override.
pub(crate) fn build_profile(
    name: &str,
    bins: Option<usize>,
    membership: Option<&str>,
) -> anyhow::Result<Profile> {
    let mut profile =
        Profile::by_name(name).with_context(|| format!("unknown profile '{name}'"))?;
    let mut overrides = Vec::new();
    if let Some(m) = bins {
        if m == 0 {
            bail!("--bins must be at least 1");
        }
        // Bin arrays and reliability tables are O(M): a stated bound keeps a typo from allocating gigabytes.
        const MAX_BINS: usize = 100_000;
        if m > MAX_BINS {
            bail!("--bins {m} is more than the {MAX_BINS} bins decal supports");
        }
        profile.num_bins = m;
        overrides.push(format!("bins={m}"));
    }
    if let Some(m) = membership {
        profile.membership =
            Membership::by_name(m).with_context(|| format!("unknown membership '{m}'"))?;
        overrides.push(format!("membership={m}"));
    }
    if !overrides.is_empty() {
        profile.name = format!("{name}({})", overrides.join(","));
    }
    Ok(profile)
}

/// Whether `path` can be streamed: an `.npy` (not `.npz`/`.csv`) in C order. Fortran-order files are read
/// whole instead (decal-io transposes them).
fn is_npy(path: &Path) -> bool {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    if matches!(ext.as_deref(), Some("npz") | Some("csv")) {
        return false;
    }
    !matches!(decal_io::npy::read_header(path), Ok(h) if h.fortran_order && h.shape.len() > 1)
}

/// A source of prediction rows: a memory-mapped `.npy` (float32/float64, native byte order: zero-copy), a
/// streamed `.npy` (other dtypes, converted to f64 chunk by chunk) or a fully loaded matrix (`.npz`, CSV).
enum Rows {
    Mapped(MappedNpy),
    Stream(NpyReader),
    Loaded { data: Vec<f64>, next: usize },
}

/// A source of labels: memory-mapped int64, streamed (other dtypes) or loaded.
enum LabelRows {
    Mapped(MappedNpy),
    Stream(NpyReader),
    Loaded { data: Vec<i64>, next: usize },
}

/// Whether a `.npy` of this dtype can be handed to the metrics without conversion.
fn mappable(h: &decal_io::npy::Header, dtypes: &[DType]) -> bool {
    dtypes.contains(&h.dtype) && h.big_endian == cfg!(target_endian = "big")
}

/// Opens predictions `[N, K]`; returns the source, N and K.
fn open_predictions(path: &Path, key: Option<&str>) -> anyhow::Result<(Rows, usize, usize)> {
    if is_npy(path) {
        let reader = NpyReader::open(path)?;
        let h = reader.header();
        if h.shape.len() != 2 {
            bail!(
                "{}: expected a 2-D [N, K] array of scores, got shape {:?}",
                path.display(),
                h.shape
            );
        }
        if !h.dtype.is_float() {
            bail!(
                "{}: expected float16/float32/float64 scores, got dtype {}",
                path.display(),
                h.descr
            );
        }
        let (n, k) = (h.shape[0], h.shape[1]);
        if n == 0 || k == 0 {
            bail!("{}: empty array of shape {:?}", path.display(), h.shape);
        }
        if mappable(h, &[DType::F32, DType::F64]) {
            return Ok((Rows::Mapped(MappedNpy::open(path)?), n, k));
        }
        Ok((Rows::Stream(reader), n, k))
    } else {
        let m = decal_io::matrix::load_matrix(path, key)?;
        let (n, k) = (m.rows, m.cols);
        Ok((
            Rows::Loaded {
                data: m.data,
                next: 0,
            },
            n,
            k,
        ))
    }
}

fn open_labels(path: &Path, key: Option<&str>) -> anyhow::Result<(LabelRows, usize)> {
    if is_npy(path) {
        let reader = NpyReader::open(path)?;
        let h = reader.header();
        let ok = h.shape.len() == 1 || (h.shape.len() == 2 && h.shape[1] == 1);
        if !ok {
            bail!(
                "{}: expected labels of shape [N], got shape {:?}",
                path.display(),
                h.shape
            );
        }
        if h.dtype == DType::F16 {
            bail!(
                "{}: float16 labels are not supported; save integer labels",
                path.display()
            );
        }
        let n = h.shape[0];
        if n == 0 {
            bail!("{}: no labels (empty array)", path.display());
        }
        if mappable(h, &[DType::I64]) {
            return Ok((LabelRows::Mapped(MappedNpy::open(path)?), n));
        }
        Ok((LabelRows::Stream(reader), n))
    } else {
        let y = decal_io::matrix::load_labels(path, key)?;
        let n = y.len();
        Ok((LabelRows::Loaded { data: y, next: 0 }, n))
    }
}

/// One window of prediction rows: borrowed from a mapping, or converted into `buf`.
enum RowWindow {
    Mapped(decal_io::mmap::Window),
    Buffered,
}

impl Rows {
    /// The next window of at most `max_rows` rows starting at row `offset`; returns it and its row count
    /// (0 at the end). Converted rows land in `buf`.
    fn next_window(
        &mut self,
        offset: usize,
        max_rows: usize,
        k: usize,
        buf: &mut Vec<f64>,
    ) -> anyhow::Result<(RowWindow, usize)> {
        match self {
            Rows::Mapped(m) => {
                let w = m.window(offset, max_rows)?;
                let rows = w.rows();
                Ok((RowWindow::Mapped(w), rows))
            }
            Rows::Stream(r) => Ok((RowWindow::Buffered, r.read_rows_f64(max_rows, buf)?)),
            Rows::Loaded { data, next } => {
                let rows = max_rows.min(data.len() / k - *next);
                buf.clear();
                buf.extend_from_slice(&data[*next * k..(*next + rows) * k]);
                *next += rows;
                Ok((RowWindow::Buffered, rows))
            }
        }
    }
}

impl RowWindow {
    fn values<'a>(&'a self, buf: &'a [f64], path: &Path) -> anyhow::Result<Values<'a>> {
        match self {
            RowWindow::Buffered => Ok(Values::F64(buf)),
            RowWindow::Mapped(w) => w
                .as_f32()
                .map(Values::F32)
                .or_else(|| w.as_f64().map(Values::F64))
                .with_context(|| {
                    format!(
                        "{}: the data section is not aligned for zero-copy reading",
                        path.display()
                    )
                }),
        }
    }
}

impl LabelRows {
    /// Reads `rows` labels starting at label `offset` into `out`.
    fn next_chunk(
        &mut self,
        rows: usize,
        offset: usize,
        path: &Path,
        buf: &mut Vec<f64>,
        out: &mut Vec<i64>,
    ) -> anyhow::Result<()> {
        out.clear();
        match self {
            LabelRows::Mapped(m) => {
                let w = m.window(offset, rows)?;
                if w.rows() != rows {
                    bail!(
                        "{}: ended after {} labels",
                        path.display(),
                        offset + w.rows()
                    );
                }
                let y = w.as_i64().with_context(|| {
                    format!(
                        "{}: the data section is not aligned for zero-copy reading",
                        path.display()
                    )
                })?;
                out.extend_from_slice(y);
            }
            LabelRows::Stream(r) => {
                let got = r.read_rows_f64(rows, buf)?;
                if got != rows {
                    bail!("{}: ended after {} labels", path.display(), offset + got);
                }
                for (i, &v) in buf.iter().enumerate() {
                    // Integer dtypes convert exactly (below 2^53); float labels must hold integers.
                    if !v.is_finite() || v.fract() != 0.0 || v.abs() > 9.007_199_254_740_992e15 {
                        bail!(
                            "{}: element {} is {v}, not an integer class index",
                            path.display(),
                            offset + i
                        );
                    }
                    out.push(v as i64);
                }
            }
            LabelRows::Loaded { data, next } => {
                out.extend_from_slice(&data[*next..*next + rows]);
                *next += rows;
            }
        }
        Ok(())
    }
}

/// Rows per window read from disk (then split into blocks across threads): 2^18 rows of K = 10 float32 values
/// is 10 MiB. Always a multiple of `BLOCK_ROWS`.
pub(crate) const DEFAULT_CHUNK_ROWS: usize = 1 << 18;

/// Largest window in bytes of f64 values (caps the window for large K).
const MAX_WINDOW_BYTES: usize = 64 << 20;

/// Rows per window: `requested` rounded up to a multiple of [`BLOCK_ROWS`] (so every window but the last
/// holds whole blocks and the result equals `evaluate` on the same rows), capped at [`MAX_WINDOW_BYTES`].
fn window_rows(requested: usize, k: usize) -> usize {
    let cap = (MAX_WINDOW_BYTES / (8 * k.max(1))).max(1);
    let rows = requested.clamp(1, cap);
    rows.div_ceil(BLOCK_ROWS) * BLOCK_ROWS
}

/// Computes the summary of predictions in `pred_path` against `labels_path`.
///
/// `.npy` inputs are read window by window (memory-mapped and zero-copy for float32/float64 predictions and
/// int64 labels, converted otherwise), so memory does not grow with N unless the profile keeps per-row values
/// (equal-mass ECE, bootstrap, OOD scores). Each window is computed in blocks of `BLOCK_ROWS` rows on `threads`
/// worker threads ([`SummaryAccumulator::add_blocked`]): the result is bit-identical to
/// `decal_metrics::evaluate` on the whole arrays, for any thread count and window size.
#[allow(clippy::too_many_arguments)]
pub(crate) fn summarise_files(
    kind: ScoreKind,
    pred_path: &Path,
    key: Option<&str>,
    labels_path: &Path,
    labels_key: Option<&str>,
    profile: &Profile,
    keep: KeepRows,
    threads: usize,
    chunk_rows: usize,
) -> anyhow::Result<(SummaryAccumulator, usize, usize)> {
    let (mut rows, n, k) = open_predictions(pred_path, key)?;
    let (mut labels, n_labels) = open_labels(labels_path, labels_key)?;
    if n != n_labels {
        bail!(
            "{} has {n_labels} labels but {} has {n} rows of predictions",
            labels_path.display(),
            pred_path.display()
        );
    }
    let window = window_rows(chunk_rows, k);
    let mut total = SummaryAccumulator::new(profile, kind, k, keep);
    let (mut buf, mut lbuf, mut ybuf) = (Vec::new(), Vec::new(), Vec::new());
    let mut offset = 0;
    decal_metrics::summary::with_threads(threads, || -> anyhow::Result<()> {
        loop {
            let (win, got) = rows.next_window(offset, window, k, &mut buf)?;
            if got == 0 {
                break;
            }
            labels.next_chunk(got, offset, labels_path, &mut lbuf, &mut ybuf)?;
            if let Some(i) = ybuf.iter().position(|&y| y < 0 || y as u64 >= k as u64) {
                bail!(
                    "{}: label {} is {}, outside [0, {k}) for the {k} classes of {}",
                    labels_path.display(),
                    offset + i,
                    ybuf[i],
                    pred_path.display()
                );
            }
            let values = win.values(&buf, pred_path)?;
            total
                .add_blocked(values, &ybuf)
                .with_context(|| pred_path.display().to_string())?;
            offset += got;
        }
        Ok(())
    })??;
    Ok((total, n, k))
}

/// OOD scores of a whole OOD file.
pub(crate) fn ood_scores_of_file(
    acc: &SummaryAccumulator,
    kind: ScoreKind,
    path: &Path,
    key: Option<&str>,
    k: usize,
) -> anyhow::Result<Vec<f64>> {
    let m = decal_io::matrix::load_matrix(path, key)?;
    if m.cols != k {
        bail!(
            "{}: has {} classes but the in-distribution predictions have {k}",
            path.display(),
            m.cols
        );
    }
    acc.ood_scores(kind, Values::F64(&m.data), 0)
        .with_context(|| path.display().to_string())
}

/// Converts decal-metrics reliability bins to decal-report's series.
pub(crate) fn reliability_series(
    summary: &Summary,
    label: &str,
) -> decal_report::reliability::ReliabilitySeries {
    decal_report::reliability::ReliabilitySeries::from_metrics(
        label,
        &summary.reliability,
        Some(summary.ece),
        &summary.definitions.ece,
    )
}

/// Formats a fraction for the table: ECE-like values ×100 with a `%` when the profile says so.
fn fmt_value(v: f64, percent: bool) -> String {
    if percent {
        format!("{:.4} %", v * 100.0)
    } else {
        format!("{v:.6}")
    }
}

/// The human-readable table: one line per metric with the definition that produced it.
pub(crate) fn render_table(s: &Summary, profile: &Profile) -> String {
    let pct = profile.render_ece_percent;
    let ci = |name: &str| -> String {
        let Some(b) = &s.bootstrap else {
            return String::new();
        };
        let iv = match name {
            "accuracy" => b.accuracy,
            "ece" => b.ece,
            "nll" => b.nll,
            "brier" => b.brier,
            "brier_div_k" => b.brier_div_k,
            _ => return String::new(),
        };
        let p = pct && name == "ece";
        format!("  [{}, {}]", fmt_value(iv.lower, p), fmt_value(iv.upper, p))
    };
    let d = &s.definitions;
    let mut rows: Vec<(String, String, String)> = vec![
        (
            "accuracy".into(),
            fmt_value(s.accuracy, false),
            d.accuracy.clone(),
        ),
        ("ece".into(), fmt_value(s.ece, pct), d.ece.clone()),
        ("mce".into(), fmt_value(s.mce, pct), d.mce.clone()),
        ("rmsce".into(), fmt_value(s.rmsce, pct), d.rmsce.clone()),
    ];
    if let Some(v) = s.ece_em {
        rows.push(("ece_em".into(), fmt_value(v, pct), d.ece_em.clone()));
    }
    rows.push((
        "classwise_ece".into(),
        fmt_value(s.classwise_ece, pct),
        d.classwise_ece.clone(),
    ));
    rows.push(("nll".into(), fmt_value(s.nll, false), d.nll.clone()));
    rows.push(("brier".into(), fmt_value(s.brier, false), d.brier.clone()));
    rows.push((
        "brier_div_k".into(),
        fmt_value(s.brier_div_k, false),
        d.brier_div_k.clone(),
    ));
    if let Some(o) = &s.ood {
        rows.push((
            "auroc".into(),
            fmt_value(o.auroc, false),
            format!("{}; score {}", d.auroc, o.score),
        ));
        rows.push((
            "fpr95".into(),
            fmt_value(s.fpr95.unwrap_or(f64::NAN), false),
            d.fpr95.clone(),
        ));
        rows.push((
            "aupr_in".into(),
            fmt_value(s.aupr_in.unwrap_or(f64::NAN), false),
            d.aupr.clone(),
        ));
        rows.push((
            "aupr_out".into(),
            fmt_value(s.aupr_out.unwrap_or(f64::NAN), false),
            d.aupr.clone(),
        ));
    }
    let mut out = format!(
        "decal metrics: profile {} (N = {}, K = {}, input: {}; probabilities: {})\n",
        d.profile, s.n, s.num_classes, d.input, d.probabilities
    );
    for (name, value, def) in rows {
        out.push_str(&format!(
            "  {name:<14} {value:>14}{:<28}  {def}\n",
            ci(&name)
        ));
    }
    if let Some(o) = &s.ood {
        out.push_str(&format!(
            "  OOD: N_id = {}, N_ood = {}; fpr95 idpos-exact {:.6}, idpos-interp {:.6}, oodpos-first {:.6}\n",
            o.n_id, o.n_ood, o.fpr95_idpos, o.fpr95_idpos_interp, o.fpr95_oodpos
        ));
    }
    if let Some(b) = &s.bootstrap {
        out.push_str(&format!("  intervals: {}\n", b.method));
    }
    for w in &s.warnings {
        out.push_str(&format!("  warning: {w}\n"));
    }
    out
}

/// Number of worker threads to use.
pub(crate) fn worker_threads(requested: Option<usize>) -> usize {
    requested
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Runs `decal metrics`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut profile = build_profile(&args.profile, args.bins, args.membership.as_deref())?;
    if let Some(s) = &args.ood_score {
        profile.ood_score =
            OodScore::by_name(s).with_context(|| format!("unknown OOD score '{s}'"))?;
    }
    if let Some(f) = &args.fpr95 {
        profile.fpr95 = match f.as_str() {
            "idpos-exact" => Fpr95Convention::IdposExact,
            "idpos-interp" => Fpr95Convention::IdposInterp,
            _ => Fpr95Convention::OodposFirst,
        };
    }
    if args.no_ece_em {
        profile.equal_mass = false;
    }
    if let Some(t) = args.prob_tolerance {
        if !(t > 0.0 && t.is_finite()) {
            bail!("--prob-tolerance must be a positive number");
        }
        profile.prob_sum_tolerance = t;
    }
    if !(args.confidence > 0.0 && args.confidence < 1.0) {
        bail!("--confidence must be in (0, 1), got {}", args.confidence);
    }
    // The output policy (decal_core::output): existing outputs are refused before any work.
    let mut outputs = decal_core::OutputFiles::new(args.force);
    if let Some(p) = &args.json {
        outputs.claim(p)?;
    }
    if let Some(stem) = &args.reliability {
        outputs.claim_stem(stem, &["svg", "png", "csv"])?;
    }
    let (kind, pred_path) = match (&args.logits, &args.probs) {
        (Some(p), None) => (ScoreKind::Logits, p.clone()),
        (None, Some(p)) => (ScoreKind::Probabilities, p.clone()),
        _ => bail!("give exactly one of --logits and --probs"),
    };
    let ood = match (&args.ood_logits, &args.ood_probs) {
        (Some(p), None) => Some((ScoreKind::Logits, p.clone())),
        (None, Some(p)) => Some((ScoreKind::Probabilities, p.clone())),
        _ => None,
    };
    if let Some(b) = args.bootstrap {
        if b == 0 {
            bail!("--bootstrap needs at least 1 resample");
        }
    }
    let keep = KeepRows {
        ood_scores: ood.is_some(),
        bootstrap: args.bootstrap.is_some(),
    };
    let (acc, _n, k) = summarise_files(
        kind,
        &pred_path,
        args.key.as_deref(),
        &args.labels,
        args.labels_key.as_deref(),
        &profile,
        keep,
        worker_threads(args.threads),
        args.chunk_rows,
    )?;
    let ood_input = match &ood {
        Some((ood_kind, path)) => {
            let scores = ood_scores_of_file(&acc, *ood_kind, path, args.ood_key.as_deref(), k)?;
            Some((acc.ood_score_name(), None, scores))
        }
        None => None,
    };
    let options = EvalOptions {
        bootstrap: args.bootstrap.map(|resamples| BootstrapConfig {
            resamples,
            seed: args.seed,
            confidence: args.confidence,
        }),
    };
    let summary = acc.finish(ood_input, options);
    print!("{}", render_table(&summary, &profile));

    // Outputs are written only after every number has been computed, each atomically.
    if let Some(json_path) = &args.json {
        let mut value = serde_json::to_value(&summary)?;
        let inputs = serde_json::json!({
            "kind": if kind == ScoreKind::Logits { "logits" } else { "probabilities" },
            "predictions": pred_path.display().to_string(),
            "labels": args.labels.display().to_string(),
            "ood": ood.as_ref().map(|(_, p)| p.display().to_string()),
            "decal_version": env!("CARGO_PKG_VERSION"),
        });
        value
            .as_object_mut()
            .expect("a summary serialises to an object")
            .insert("inputs".into(), inputs);
        let staged = outputs.staged(json_path)?;
        decal_core::write_json_atomic(&staged, &value)?;
    }
    if let Some(stem) = &args.reliability {
        let title = format!(
            "Reliability ({}, {})",
            profile.name,
            pred_path.file_name().unwrap_or_default().to_string_lossy()
        );
        let staged = outputs.staged(stem)?;
        decal_report::reliability::write_reliability_diagram(
            &staged,
            &[reliability_series(&summary, "predictions")],
            &title,
        )
        .with_context(|| format!("writing {}", stem.display()))?;
    }
    for f in outputs.commit()? {
        println!("wrote {}", f.display());
    }
    Ok(())
}
