//! Predictive distributions of every method on cached features.
//!
//! | method | predictive distribution | seed reference |
//! |---|---|---|
//! | baseline | `softmax(W f + b)` with the stage-1 linear head | §6.4 |
//! | TS | `softmax((W f + b) / T)`, T fitted on the validation split | §9 |
//! | TST / REINIT | `softmax(head(f))` | §6.4 |
//! | V-TST m ≥ 1 | `(1/m) Σ_s softmax(decoder(μ + σ ε_s))` — mean of probabilities | §6.4 |
//! | V-TST m = 0 | `softmax(decoder(μ))` (decal's deterministic option, Q-7) | — |
//! | TS + head | the head's rule with every logit divided by T: `(1/m) Σ_s softmax(z_s / T)` for V-TST | §9, BUG-16 fixed |
//!
//! [`Predictions::logits`] holds, per example, values whose softmax is the predictive distribution: real
//! logits for deterministic methods ([`LogitKind::Logits`], so max-logit and energy scores exist), and
//! log predictive probabilities for sampled V-TST ([`LogitKind::LogProbs`]). V-TST sampling is seeded by an
//! explicit evaluation seed (fixes Q-7) and does not depend on the chunk size; a temperature does not change
//! the draws, so a tempered V-TST row sees exactly the ε of its untempered row. [`sample_logits`] returns
//! the per-sample logits `[m, N, K]` of the same draws, on which a temperature is fitted.

use decal_models::heads::{mean_of_softmaxes_log, Head, NormalRng};
use decal_train::features::FeatureSet;
use tch::{Device, Kind, Tensor};

use crate::EvalError;

/// How a method turns features into predictions.
#[derive(Debug)]
pub enum Predictor<'a> {
    /// `logits = (features · weightᵀ + bias) / temperature` (baseline: T = 1; TS: the fitted T).
    Linear {
        /// `[K, F]`.
        weight: &'a Tensor,
        /// `[K]`.
        bias: Option<&'a Tensor>,
        /// T > 0.
        temperature: f64,
    },
    /// The features are the model's own logits (experiments on feature files that give them):
    /// `logits = features / temperature`, in double precision.
    Given {
        /// T > 0.
        temperature: f64,
    },
    /// A post-hoc calibrator (vector scaling, histogram binning, isotonic regression) on the logits of
    /// `base`: the predictions are the calibrator's probabilities ([`LogitKind::Probabilities`]).
    Calibrated {
        /// What produces the logits.
        base: Box<Predictor<'a>>,
        /// The fitted calibrator.
        calibrator: &'a decal_calib::Calibrator,
    },
    /// A stage-2 head. For V-TST `num_samples` is m (0 = decode μ); other heads ignore it.
    Head {
        /// The head.
        head: &'a Head,
        /// m.
        num_samples: usize,
        /// Seed of the evaluation ε stream.
        eval_seed: u64,
        /// T > 0 dividing every (per-sample) logit before the softmax; 1 = the head as trained.
        temperature: f64,
    },
}

/// What [`Predictions::logits`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitKind {
    /// Real logits (deterministic methods).
    Logits,
    /// Log predictive probabilities (sampled V-TST): their softmax is the predictive itself.
    LogProbs,
    /// The predictive probabilities themselves (a post-hoc calibrator's output: vector scaling, histogram
    /// binning, isotonic regression); rows sum to 1 and may hold exact zeros.
    Probabilities,
}

impl LogitKind {
    /// How the metrics read the values.
    pub fn score_kind(self) -> decal_metrics::summary::ScoreKind {
        match self {
            LogitKind::Probabilities => decal_metrics::summary::ScoreKind::Probabilities,
            LogitKind::Logits | LogitKind::LogProbs => decal_metrics::summary::ScoreKind::Logits,
        }
    }

    /// Its name in stored prediction files.
    pub fn name(self) -> &'static str {
        match self {
            LogitKind::Logits => "logits",
            LogitKind::LogProbs => "log-probs",
            LogitKind::Probabilities => "probabilities",
        }
    }

    /// The kind named `name` ([`Self::name`]).
    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "logits" => LogitKind::Logits,
            "log-probs" => LogitKind::LogProbs,
            "probabilities" => LogitKind::Probabilities,
            _ => return None,
        })
    }
}

/// Predictions of one method on one split.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// K.
    pub num_classes: usize,
    /// `[N, K]` row-major; softmax of a row = the predictive distribution.
    pub logits: Vec<f64>,
    /// What `logits` holds.
    pub kind: LogitKind,
    /// `[N]` labels.
    pub labels: Vec<i64>,
    /// `−MI` per example (BALD, larger = more in-distribution), for V-TST with m ≥ 2.
    pub neg_mutual_information: Option<Vec<f64>>,
}

impl Predictions {
    /// N.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Predictive probabilities `[N, K]` (softmax of each row, in f64; the values themselves for
    /// [`LogitKind::Probabilities`]).
    pub fn probabilities(&self) -> Vec<f64> {
        if self.kind == LogitKind::Probabilities {
            return self.logits.clone();
        }
        let k = self.num_classes;
        let mut out = Vec::with_capacity(self.logits.len());
        for row in self.logits.chunks(k) {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            out.extend(exps.iter().map(|e| e / sum));
        }
        out
    }

    /// Concatenates prediction sets of the same method (e.g. train + validation parts).
    pub fn concat(parts: &[&Predictions]) -> Result<Predictions, EvalError> {
        let first = parts
            .first()
            .ok_or_else(|| EvalError::Mismatch("no predictions to concatenate".into()))?;
        if parts
            .iter()
            .any(|p| p.num_classes != first.num_classes || p.kind != first.kind)
        {
            return Err(EvalError::Mismatch(
                "concatenated predictions differ in K or kind".into(),
            ));
        }
        let mi = parts
            .iter()
            .all(|p| p.neg_mutual_information.is_some())
            .then(|| {
                parts
                    .iter()
                    .flat_map(|p| p.neg_mutual_information.clone().unwrap_or_default())
                    .collect()
            });
        Ok(Predictions {
            num_classes: first.num_classes,
            logits: parts
                .iter()
                .flat_map(|p| p.logits.iter().copied())
                .collect(),
            kind: first.kind,
            labels: parts
                .iter()
                .flat_map(|p| p.labels.iter().copied())
                .collect(),
            neg_mutual_information: mi,
        })
    }
}

/// Rows per forward chunk: bounds memory (`chunk × m × K` floats for V-TST).
const CHUNK: usize = 2048;

fn to_f64(t: &Tensor) -> Vec<f64> {
    Vec::try_from(
        t.to_kind(Kind::Double)
            .to_device(Device::Cpu)
            .flatten(0, -1),
    )
    .expect("a double tensor converts to Vec<f64>")
}

/// The calibrator's probabilities of `base`'s logits on `features`.
fn calibrated(
    base: &Predictor<'_>,
    calibrator: &decal_calib::Calibrator,
    features: &FeatureSet,
    device: Device,
) -> Result<Predictions, EvalError> {
    let p = predict(base, features, device)?;
    if p.kind != LogitKind::Logits {
        return Err(EvalError::Mismatch(format!(
            "a post-hoc calibrator needs logits, got {}",
            p.kind.name()
        )));
    }
    let probs = calibrator
        .apply(&p.logits, p.num_classes)
        .map_err(|e| EvalError::Mismatch(format!("applying the calibrator: {e}")))?;
    Ok(Predictions {
        num_classes: p.num_classes,
        logits: probs,
        kind: LogitKind::Probabilities,
        labels: p.labels,
        neg_mutual_information: None,
    })
}

/// Runs `predictor` over `features` (no gradients), in chunks on `device`.
pub fn predict(
    predictor: &Predictor<'_>,
    features: &FeatureSet,
    device: Device,
) -> Result<Predictions, EvalError> {
    if let Predictor::Calibrated { base, calibrator } = predictor {
        return calibrated(base, calibrator, features, device);
    }
    let n = features.len();
    let f = features.feature_dim;
    let mut rng = match predictor {
        Predictor::Head { eval_seed, .. } => NormalRng::new(*eval_seed),
        Predictor::Linear { .. } | Predictor::Given { .. } | Predictor::Calibrated { .. } => {
            NormalRng::new(0)
        }
    };
    let (kind, with_mi) = match predictor {
        Predictor::Head {
            head, num_samples, ..
        } if head.is_stochastic() && *num_samples > 0 => (LogitKind::LogProbs, *num_samples >= 2),
        _ => (LogitKind::Logits, false),
    };
    let mut logits = Vec::new();
    let mut mi = Vec::new();
    let mut num_classes = 0usize;
    tch::no_grad(|| -> Result<(), EvalError> {
        for start in (0..n).step_by(CHUNK) {
            let rows = CHUNK.min(n - start);
            let x = Tensor::from_slice(&features.features[start * f..(start + rows) * f])
                .reshape([rows as i64, f as i64])
                .to_device(device);
            let out = match predictor {
                Predictor::Linear {
                    weight,
                    bias,
                    temperature,
                } => {
                    if weight.size()[1] != f as i64 {
                        return Err(EvalError::Mismatch(format!(
                            "linear head expects {}-dimensional features, got {f}",
                            weight.size()[1]
                        )));
                    }
                    x.linear(weight, *bias).to_kind(Kind::Double) / *temperature
                }
                Predictor::Given { temperature } => x.to_kind(Kind::Double) / *temperature,
                Predictor::Calibrated { .. } => {
                    return Err(EvalError::Mismatch(
                        "a calibrated predictor is applied to its base's predictions".into(),
                    ))
                }
                Predictor::Head {
                    head,
                    num_samples,
                    temperature,
                    ..
                } => {
                    if kind == LogitKind::LogProbs {
                        let samples = head.forward_samples(&x, *num_samples, &mut rng).logits; // [S, n, K]
                                                                                               // Untempered rows keep the head crate's predictive unchanged (bit-identical to earlier
                                                                                               // runs); tempered rows divide every sample's logits in double precision.
                        let samples = if *temperature == 1.0 {
                            samples
                        } else {
                            samples.to_kind(Kind::Double) / *temperature
                        };
                        if with_mi {
                            let probs = to_f64(&samples.softmax(-1, Kind::Double));
                            let k = samples.size()[2] as usize;
                            mi.extend(decal_metrics::ood::scores::neg_mutual_information(
                                &probs,
                                *num_samples,
                                k,
                            ));
                        }
                        if *temperature == 1.0 {
                            mean_of_softmaxes_log(&samples.to_kind(Kind::Double))
                        } else {
                            mean_of_softmaxes_log_f64(&samples)
                        }
                    } else {
                        head.deterministic_logits(&x).to_kind(Kind::Double) / *temperature
                    }
                }
            };
            num_classes = out.size()[1] as usize;
            logits.extend(to_f64(&out));
        }
        Ok(())
    })?;
    Ok(Predictions {
        num_classes,
        logits,
        kind,
        labels: features.labels.clone(),
        neg_mutual_information: with_mi.then_some(mi),
    })
}

/// `log((1/S) Σ_s softmax(logits[s]))` in double precision, `[S, N, K]` → `[N, K]`.
fn mean_of_softmaxes_log_f64(logits: &Tensor) -> Tensor {
    let num_samples = logits.size()[0] as f64;
    logits
        .log_softmax(-1, Kind::Double)
        .logsumexp([0i64].as_slice(), false)
        - num_samples.ln()
}

/// Per-sample logits of a head on `features`, flat `[m, N, K]` (sample `s` of example `i` at row
/// `s·N + i`), from the ε stream of `eval_seed`: the same draws [`predict`] makes for this head, m and seed.
/// Deterministic heads (and V-TST with m = 0, which decodes μ) give their logits once (`[1, N, K]`).
/// Returns the logits and K.
pub fn sample_logits(
    head: &Head,
    num_samples: usize,
    eval_seed: u64,
    features: &FeatureSet,
    device: Device,
) -> Result<(Vec<f64>, usize), EvalError> {
    let n = features.len();
    let f = features.feature_dim;
    let mut rng = NormalRng::new(eval_seed);
    let sampled = head.is_stochastic() && num_samples > 0;
    let m = if sampled { num_samples } else { 1 };
    let mut chunks: Vec<(usize, usize, Vec<f64>)> = Vec::new();
    let mut num_classes = 0usize;
    tch::no_grad(|| {
        for start in (0..n).step_by(CHUNK) {
            let rows = CHUNK.min(n - start);
            let x = Tensor::from_slice(&features.features[start * f..(start + rows) * f])
                .reshape([rows as i64, f as i64])
                .to_device(device);
            let logits = if sampled {
                head.forward_samples(&x, num_samples, &mut rng).logits // [m, rows, K]
            } else {
                head.deterministic_logits(&x).unsqueeze(0) // [1, rows, K]
            };
            num_classes = logits.size()[2] as usize;
            chunks.push((start, rows, to_f64(&logits)));
        }
    });
    if n == 0 {
        return Err(EvalError::Mismatch(
            "no examples to compute per-sample logits on".into(),
        ));
    }
    let k = num_classes;
    let mut out = vec![0.0; m * n * k];
    for (start, rows, values) in chunks {
        for s in 0..m {
            let src = &values[s * rows * k..(s + 1) * rows * k];
            out[(s * n + start) * k..(s * n + start + rows) * k].copy_from_slice(src);
        }
    }
    Ok((out, k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use decal_models::heads::HeadConfig;
    use tch::nn;

    fn features(n: usize) -> FeatureSet {
        let mut rng = NormalRng::new(5);
        FeatureSet {
            features: (0..n * 6).map(|_| rng.next_normal() as f32).collect(),
            labels: (0..n as i64).map(|i| i % 3).collect(),
            feature_dim: 6,
        }
    }

    #[test]
    fn linear_predictor_applies_temperature() {
        let w = Tensor::from_slice(&[
            1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0,
        ])
        .reshape([2, 6]);
        let b = Tensor::from_slice(&[0.5f32, -0.5]);
        let set = features(3);
        let p1 = predict(
            &Predictor::Linear {
                weight: &w,
                bias: Some(&b),
                temperature: 1.0,
            },
            &set,
            Device::Cpu,
        )
        .unwrap();
        let p2 = predict(
            &Predictor::Linear {
                weight: &w,
                bias: Some(&b),
                temperature: 2.0,
            },
            &set,
            Device::Cpu,
        )
        .unwrap();
        for i in 0..3 {
            let f = &set.features[i * 6..];
            let expect = [f[0] as f64 + 0.5, 2.0 * f[1] as f64 - 0.5];
            for (c, e) in expect.iter().enumerate() {
                assert!((p1.logits[i * 2 + c] - e).abs() < 1e-5);
                assert!((p2.logits[i * 2 + c] - e / 2.0).abs() < 1e-5);
            }
        }
    }

    /// V-TST predictions are reproducible from the evaluation seed, independent of chunking (N spans
    /// two chunks), rows are distributions, and m ≥ 2 yields a non-positive −MI.
    #[test]
    fn vtst_predictions_are_seeded_and_chunk_independent() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = decal_models::seeded(2, || HeadConfig::vtst(6, 3, 3).build(&vs.root())).unwrap();
        let set = features(CHUNK + 7);
        let pred = |seed| {
            predict(
                &Predictor::Head {
                    head: &head,
                    num_samples: 4,
                    eval_seed: seed,
                    temperature: 1.0,
                },
                &set,
                Device::Cpu,
            )
            .unwrap()
        };
        let a = pred(9);
        assert_eq!(a, pred(9));
        assert_ne!(a.logits, pred(10).logits);
        assert_eq!(a.kind, LogitKind::LogProbs);
        // The last 7 rows evaluated alone (another chunking) give the same values.
        let tail = set.subset(&(CHUNK..CHUNK + 7).collect::<Vec<_>>());
        let mut rng = NormalRng::new(9);
        // Advance the stream past the first CHUNK examples (4 samples × 3 latent dims each).
        for _ in 0..CHUNK * 4 * 3 {
            rng.next_normal();
        }
        let x = Tensor::from_slice(&tail.features).reshape([7, 6]);
        let direct = to_f64(&mean_of_softmaxes_log(
            &head
                .forward_samples(&x, 4, &mut rng)
                .logits
                .to_kind(Kind::Double),
        ));
        let got = &a.logits[CHUNK * 3..];
        for (g, d) in got.iter().zip(&direct) {
            assert!((g - d).abs() < 1e-6, "{g} vs {d}");
        }
        for row in a.probabilities().chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        let mi = a.neg_mutual_information.as_ref().unwrap();
        assert_eq!(mi.len(), set.len());
        assert!(mi.iter().all(|v| *v <= 1e-12));
    }
    /// A tempered V-TST row uses the untempered row's ε: its predictive equals decal-calib's
    /// `(1/m) Σ_s softmax(z_s / T)` on [`sample_logits`] of the same seed, and T = 1 gives the untempered row.
    #[test]
    fn tempered_vtst_uses_the_same_draws_as_sample_logits() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = decal_models::seeded(3, || HeadConfig::vtst(6, 3, 3).build(&vs.root())).unwrap();
        let set = features(CHUNK + 5);
        let pred = |t: f64| {
            predict(
                &Predictor::Head {
                    head: &head,
                    num_samples: 5,
                    eval_seed: 11,
                    temperature: t,
                },
                &set,
                Device::Cpu,
            )
            .unwrap()
        };
        let (z, k) = sample_logits(&head, 5, 11, &set, Device::Cpu).unwrap();
        assert_eq!((z.len(), k), (5 * set.len() * 3, 3));
        for t in [0.7, 2.5] {
            let scaler = decal_calib::TemperatureScaler::fixed(t, 3, 5);
            let want = scaler.apply_sampled(&z, 5).unwrap();
            let got = pred(t).probabilities();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "T = {t}: {g} vs {w}");
            }
        }
        // Temperature 1 through the tempered (double) formula vs the head crate's predictive.
        let untempered = pred(1.0).probabilities();
        let scaler_one = decal_calib::TemperatureScaler::fixed(1.0, 3, 5);
        for (a, b) in untempered
            .iter()
            .zip(&scaler_one.apply_sampled(&z, 5).unwrap())
        {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // Deterministic heads: one "sample", the logits divided by T.
        let tst = HeadConfig::tst(6, 4, 3)
            .build(&vs.root().sub("tst"))
            .unwrap();
        let (zt, _) = sample_logits(&tst, 10, 0, &set, Device::Cpu).unwrap();
        assert_eq!(zt.len(), set.len() * 3);
        let p = predict(
            &Predictor::Head {
                head: &tst,
                num_samples: 10,
                eval_seed: 0,
                temperature: 2.0,
            },
            &set,
            Device::Cpu,
        )
        .unwrap();
        assert_eq!(p.kind, LogitKind::Logits);
        for (a, b) in p.logits.iter().zip(&zt) {
            assert!((a - b / 2.0).abs() < 1e-12);
        }
    }
}
