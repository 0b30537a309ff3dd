//! Stage 2 for many seeds at once: every seed of one head spec trained as **one batched model**.
//!
//! The `S` seeds' parameters are stacked (`[S, out, in]` weights, `[S, out]` biases) and every linear layer
//! is one batched matrix product (`baddbmm`) over the seeds, so the framework overhead, the feature gather
//! and the validation pass are paid once per step instead of once per seed. Everything that makes the seeds
//! differ stays per seed, exactly as in [`crate::stage2::train`]:
//! - **initialisation**: seed `s`'s head is built with `tch::manual_seed(s)` as the single-seed trainer
//!   builds it, then copied into slice `s` (libtorch's global generator, as in
//!   [`crate::stage2::train`]: do not build heads on other threads of the same process meanwhile);
//! - **optimiser state**: one Adam over the stacked tensors is per-seed Adam, because Adam is elementwise
//!   and all seeds take the same number of steps (the bias corrections agree);
//! - **the loss**: the sum over seeds of each seed's own batch-mean loss, so seed `s`'s gradient is exactly
//!   the gradient of its own loss;
//! - **random streams**: shuffling, ε and the validation ε come from each seed's own [`NormalRng`] streams
//!   with the same constants as the single-seed trainer, and the view choice from [`ViewSampler`];
//! - **checkpoint selection**: each seed keeps its own best epoch (validation NLL of the predictive by
//!   default, or the seed's loss, [`Selection`]).
//!
//! The result is one [`TrainedHead`] per seed with the ordinary (unbatched) head and parameter names, so
//! [`crate::stage2::save_head`] writes the same checkpoint as the single-seed path and evaluation code is
//! unchanged.
//!
//! # Equivalence with training each seed alone
//! Same data order, same ε, the same initial weights (built exactly as the single-seed trainer builds them).
//! The arithmetic differs only in the
//! matrix-product kernels (`baddbmm` over `[S, B, F]` against `addmm` over `[B, F]`) and in how vectorised
//! elementwise kernels split differently sized tensors, which can change the last bit of a sum; those
//! differences then propagate through training. So the results agree **within float tolerance, not
//! bit-for-bit** (tested in `tests/stage2_batched.rs`: after 8 epochs on synthetic features every seed's
//! per-epoch validation NLL and training loss agree within 1e-6 of [`crate::stage2::train`] — measured
//! ≤ 2e-8 — its weights within 1e-5 — measured ≤ 2e-7, a few float32 ulps — and the selected epoch is
//! the same). A seed trained inside a batch and the same seed batched alone agree to the same tolerance.

use std::collections::BTreeMap;

use decal_models::heads::{HeadKind, NormalRng};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::features::FeatureSet;
use crate::stage2::{EpochStats, Selection, Stage2Config, Stage2Error, TrainedHead};
use crate::views::{ViewCache, ViewSampler};

/// Where the training features come from.
#[derive(Debug, Clone, Copy)]
pub enum BatchedSource<'a> {
    /// The same features every epoch (the un-augmented cache).
    Fixed(&'a FeatureSet),
    /// Augmented views: each epoch, each seed takes one view per image from [`ViewSampler`].
    Views(&'a ViewCache),
    /// Augmented views in memory (views given as files): view `a` is `[N, F]`, every view with the same
    /// labels; chosen as for [`BatchedSource::Views`].
    Stack(&'a [FeatureSet]),
}

impl BatchedSource<'_> {
    fn len(&self) -> usize {
        match self {
            BatchedSource::Fixed(s) => s.len(),
            BatchedSource::Views(c) => c.len(),
            BatchedSource::Stack(v) => v.first().map_or(0, FeatureSet::len),
        }
    }
    fn feature_dim(&self) -> usize {
        match self {
            BatchedSource::Fixed(s) => s.feature_dim,
            BatchedSource::Views(c) => c.feature_dim(),
            BatchedSource::Stack(v) => v.first().map_or(0, |s| s.feature_dim),
        }
    }
    fn label(&self, row: usize) -> i64 {
        match self {
            BatchedSource::Fixed(s) => s.labels[row],
            BatchedSource::Views(c) => c.labels()[row],
            BatchedSource::Stack(v) => v[0].labels[row],
        }
    }
    fn row(&self, view: usize, row: usize, out: &mut [f32]) -> Result<(), Stage2Error> {
        match self {
            BatchedSource::Fixed(s) => {
                let f = s.feature_dim;
                out.copy_from_slice(&s.features[row * f..(row + 1) * f]);
                Ok(())
            }
            BatchedSource::Views(c) => c
                .read_row(view, row, out)
                .map_err(|e| Stage2Error::Features(e.to_string())),
            BatchedSource::Stack(v) => {
                let s = v.get(view).ok_or_else(|| {
                    Stage2Error::Features(format!("view {view} of {} given views", v.len()))
                })?;
                let f = s.feature_dim;
                out.copy_from_slice(&s.features[row * f..(row + 1) * f]);
                Ok(())
            }
        }
    }
}

/// One linear layer for every seed: `y[s] = x[s] · W[s]ᵀ + b[s]`.
struct BatchedLinear {
    w: Tensor,
    b: Tensor,
}

impl BatchedLinear {
    /// `x`: `[S, R, in]` → `[S, R, out]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.b
            .unsqueeze(1)
            .baddbmm(x, &self.w.transpose(1, 2), 1.0, 1.0)
    }
}

fn mlp(layers: &[BatchedLinear], x: &Tensor) -> Tensor {
    let mut h = layers[0].forward(x);
    for layer in &layers[1..] {
        h = layer.forward(&h.relu());
    }
    h
}

/// The stacked head.
enum BatchedHead {
    Tst {
        encoder: Vec<BatchedLinear>,
        decoder: BatchedLinear,
    },
    Vtst {
        mean: Vec<BatchedLinear>,
        logvar: Vec<BatchedLinear>,
        decoder: BatchedLinear,
        latent_dim: i64,
    },
    Reinit {
        linear: BatchedLinear,
    },
}

/// Per-sample logits `[S, m, R, K]` and `KL/Z` `[S, R]`.
struct Samples {
    logits: Tensor,
    kl: Tensor,
}

impl BatchedHead {
    fn deterministic_logits(&self, x: &Tensor) -> Tensor {
        match self {
            BatchedHead::Tst { encoder, decoder } => decoder.forward(&mlp(encoder, x)),
            BatchedHead::Vtst { mean, decoder, .. } => decoder.forward(&mlp(mean, x)),
            BatchedHead::Reinit { linear } => linear.forward(x),
        }
    }

    /// `x`: `[S, R, F]`; ε for seed `s` from `rngs[s]`, drawn example-major `[R, m, Z]` as
    /// `VtstHead::forward_samples` draws it.
    fn forward_samples(&self, x: &Tensor, m: usize, rngs: &mut [NormalRng]) -> Samples {
        match self {
            BatchedHead::Vtst {
                mean,
                logvar,
                decoder,
                latent_dim,
            } => {
                let mu = mlp(mean, x); // [S, R, Z]
                let lv = mlp(logvar, x).log_sigmoid();
                let terms = &lv - mu.square() - lv.exp() + 1.0;
                let kl = terms.sum_dim_intlist([2i64].as_slice(), false, Kind::Float)
                    * (-0.5 / *latent_dim as f64); // [S, R]
                let size = mu.size();
                let (s, r, z) = (size[0], size[1], size[2]);
                let eps: Vec<Tensor> = rngs
                    .iter_mut()
                    .map(|rng| {
                        rng.normal_tensor(&[r, m as i64, z], mu.device())
                            .transpose(0, 1)
                    })
                    .collect();
                let eps = Tensor::stack(&eps, 0); // [S, m, R, Z]
                let zs = mu.unsqueeze(1) + (&lv * 0.5).exp().unsqueeze(1) * eps;
                let logits = decoder
                    .forward(&zs.reshape([s, m as i64 * r, z]))
                    .reshape([s, m as i64, r, -1]);
                Samples { logits, kl }
            }
            _ => {
                let logits = self.deterministic_logits(x).unsqueeze(1); // [S, 1, R, K]
                let size = x.size();
                let kl = Tensor::zeros([size[0], size[1]], (Kind::Float, x.device()));
                Samples { logits, kl }
            }
        }
    }

    /// Log predictive `[S, R, K]` (V-TST with m ≥ 1: log mean of the m softmaxes).
    fn predictive_log_probs(&self, x: &Tensor, m: usize, rngs: &mut [NormalRng]) -> Tensor {
        match self {
            BatchedHead::Vtst { .. } if m > 0 => {
                let samples = self.forward_samples(x, m, rngs);
                samples
                    .logits
                    .log_softmax(-1, Kind::Float)
                    .logsumexp([1i64].as_slice(), false)
                    - (m as f64).ln()
            }
            _ => self.deterministic_logits(x).log_softmax(-1, Kind::Float),
        }
    }
}

/// A seed's selected epoch so far: (criterion, epoch, copies of its slice of every variable).
type BestEpoch = (f64, usize, Vec<(String, Tensor)>);

/// Stream constants of [`crate::stage2::train`] (kept identical so a seed's shuffling and ε are the same
/// whether it is trained alone or batched).
const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4521;
const EPS_STREAM: u64 = 0x4550_5349_4c4f_4e21;
const VAL_STREAM: u64 = 0x56414c49_44415445;
/// Rows of the validation forward pass at a time (as the single-seed trainer).
const VAL_CHUNK: i64 = 4096;

/// Checks that `configs` differ only in their seeds and returns the shared config.
fn common_config(configs: &[Stage2Config]) -> Result<&Stage2Config, Stage2Error> {
    let first = configs
        .first()
        .ok_or_else(|| Stage2Error::Config("no seeds to train".into()))?;
    for c in configs {
        c.validate()?;
        if (Stage2Config {
            seed: first.seed,
            ..c.clone()
        }) != *first
        {
            return Err(Stage2Error::Config(format!(
                "batched seeds must share every setting but the seed (seed {} differs from seed {})",
                c.seed, first.seed
            )));
        }
    }
    let mut seeds: Vec<u64> = configs.iter().map(|c| c.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    if seeds.len() != configs.len() {
        return Err(Stage2Error::Config("a seed is listed twice".into()));
    }
    Ok(first)
}

/// Builds every seed's head as the single-seed trainer does and stacks the variables by name.
fn init_stacked(
    configs: &[Stage2Config],
    device: Device,
) -> Result<(nn::VarStore, BTreeMap<String, Tensor>), Stage2Error> {
    let mut per_name: BTreeMap<String, Vec<Tensor>> = BTreeMap::new();
    for c in configs {
        let vs = nn::VarStore::new(device);
        let _head = decal_models::seeded(c.seed as i64, || c.head.build(&vs.root()))?;
        for (name, t) in vs.variables() {
            per_name.entry(name).or_default().push(t.detach().copy());
        }
    }
    let vs = nn::VarStore::new(device);
    let root = vs.root();
    let mut stacked = BTreeMap::new();
    for (name, ts) in per_name {
        let var = root.var_copy(&name.replace('.', "__"), &Tensor::stack(&ts, 0));
        stacked.insert(name, var);
    }
    Ok((vs, stacked))
}

fn layers(
    stacked: &BTreeMap<String, Tensor>,
    prefix: &str,
    count: usize,
) -> Result<Vec<BatchedLinear>, Stage2Error> {
    (0..count)
        .map(|i| layer(stacked, &format!("{prefix}.{i}")))
        .collect()
}

fn layer(stacked: &BTreeMap<String, Tensor>, prefix: &str) -> Result<BatchedLinear, Stage2Error> {
    let get = |what: &str| {
        stacked
            .get(&format!("{prefix}.{what}"))
            .map(|t| t.shallow_clone())
            .ok_or_else(|| {
                Stage2Error::Config(format!("head has no variable {prefix}.{what} (internal)"))
            })
    };
    Ok(BatchedLinear {
        w: get("weight")?,
        b: get("bias")?,
    })
}

fn batched_head(
    config: &Stage2Config,
    stacked: &BTreeMap<String, Tensor>,
) -> Result<BatchedHead, Stage2Error> {
    let n_enc = config.head.encoder_widths().len() - 1;
    Ok(match config.head.kind {
        HeadKind::Tst => BatchedHead::Tst {
            encoder: layers(stacked, "encoder", n_enc)?,
            decoder: layer(stacked, "decoder")?,
        },
        HeadKind::Vtst => BatchedHead::Vtst {
            mean: layers(stacked, "mean", n_enc)?,
            logvar: layers(stacked, "logvar", n_enc)?,
            decoder: layer(stacked, "decoder")?,
            latent_dim: config.head.latent_dim,
        },
        HeadKind::Reinit => BatchedHead::Reinit {
            linear: layer(stacked, "linear")?,
        },
    })
}

/// Per-seed batch-mean losses `[S]` (classification loss over samples and examples, + mean KL/Z for
/// V-TST), as [`crate::stage2`]'s `batch_loss` computes them for one seed.
fn seed_losses(
    kind: HeadKind,
    loss: &crate::losses::Loss,
    samples: &Samples,
    y: &Tensor,
) -> Result<Vec<Tensor>, Stage2Error> {
    let size = samples.logits.size(); // [S, m, R, K]
    (0..size[0])
        .map(|s| {
            let logits = samples.logits.get(s).reshape([size[1] * size[2], size[3]]);
            let labels = y.get(s).repeat([size[1]]);
            let class = loss.compute(&logits, &labels)?;
            Ok(if kind == HeadKind::Vtst {
                class + samples.kl.get(s).mean(Kind::Float)
            } else {
                class
            })
        })
        .collect()
}

/// Trains one head per config (all equal but for the seed) as one batched model; returns them in the
/// order of `configs`. `on_epoch(seed, stats)` is called for every seed after every epoch (`seconds` is
/// the wall time of the whole batched epoch).
pub fn train_batched(
    configs: &[Stage2Config],
    source: BatchedSource<'_>,
    val: &FeatureSet,
    device: Device,
    on_epoch: &mut dyn FnMut(u64, &EpochStats),
) -> Result<Vec<TrainedHead>, Stage2Error> {
    let config = common_config(configs)?;
    config.head.check_feature_dim(source.feature_dim() as i64)?;
    config.head.check_feature_dim(val.feature_dim as i64)?;
    let loss = config.loss.build()?;
    let kind = config.head.kind;
    let num_seeds = configs.len();
    let (vs, stacked) = init_stacked(configs, device)?;
    let head = batched_head(config, &stacked)?;
    let mut opt = nn::Adam::default()
        .build(&vs, config.lr)
        .map_err(|source| Stage2Error::Tch {
            path: "<optimizer>".into(),
            source,
        })?;
    let mut shuffle_rngs: Vec<NormalRng> = configs
        .iter()
        .map(|c| NormalRng::new(c.seed ^ SHUFFLE_STREAM))
        .collect();
    let mut eps_rngs: Vec<NormalRng> = configs
        .iter()
        .map(|c| NormalRng::new(c.seed ^ EPS_STREAM))
        .collect();
    let samplers: Vec<ViewSampler> = match source {
        BatchedSource::Views(cache) => configs
            .iter()
            .map(|c| ViewSampler::new(cache.num_views(), c.seed))
            .collect(),
        BatchedSource::Stack(views) => configs
            .iter()
            .map(|c| ViewSampler::new(views.len(), c.seed))
            .collect(),
        BatchedSource::Fixed(_) => Vec::new(),
    };
    let (val_x, val_y) = val.to_tensors(device);
    let n = source.len();
    let f = source.feature_dim();
    if n == 0 {
        return Err(Stage2Error::Features("no training features".into()));
    }

    let mut best: Vec<Option<BestEpoch>> = (0..num_seeds).map(|_| None).collect();
    let mut histories: Vec<Vec<EpochStats>> = vec![Vec::with_capacity(config.epochs); num_seeds];
    let mut xbuf: Vec<f32> = Vec::new();
    let mut ybuf: Vec<i64> = Vec::new();
    for epoch in 0..config.epochs {
        let start = std::time::Instant::now();
        let orders: Vec<Vec<usize>> = shuffle_rngs
            .iter_mut()
            .map(|rng| {
                if config.shuffle {
                    rng.permutation(n)
                } else {
                    (0..n).collect()
                }
            })
            .collect();
        let views: Vec<Vec<u32>> = samplers
            .iter()
            .map(|s| s.views_for_epoch(epoch, n))
            .collect();
        let mut loss_sums = vec![0.0f64; num_seeds];
        for b0 in (0..n).step_by(config.batch_size) {
            let b1 = (b0 + config.batch_size).min(n);
            let rows = b1 - b0;
            xbuf.resize(num_seeds * rows * f, 0.0);
            ybuf.clear();
            for (s, order) in orders.iter().enumerate() {
                for (j, &r) in order[b0..b1].iter().enumerate() {
                    let view = views.get(s).map_or(0, |v| v[r] as usize);
                    let at = (s * rows + j) * f;
                    source.row(view, r, &mut xbuf[at..at + f])?;
                    ybuf.push(source.label(r));
                }
            }
            let x = Tensor::from_slice(&xbuf)
                .reshape([num_seeds as i64, rows as i64, f as i64])
                .to_device(device);
            let y = Tensor::from_slice(&ybuf)
                .reshape([num_seeds as i64, rows as i64])
                .to_device(device);
            let samples = head.forward_samples(&x, config.train_samples, &mut eps_rngs);
            let losses = seed_losses(kind, &loss, &samples, &y)?;
            let values: Vec<f64> = losses.iter().map(|l| l.double_value(&[])).collect();
            if let Some((s, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(Stage2Error::Config(format!(
                    "seed {}: training diverged at epoch {epoch}: loss is {value}",
                    configs[s].seed
                )));
            }
            let total = Tensor::stack(&losses, 0).sum(Kind::Float);
            opt.backward_step(&total);
            for (sum, v) in loss_sums.iter_mut().zip(&values) {
                *sum += v * rows as f64;
            }
        }
        // Validation, per seed with its own fixed evaluation stream (as the single-seed trainer).
        let stats = tch::no_grad(|| -> Result<Vec<(f64, f64, f64)>, Stage2Error> {
            let mut val_rngs: Vec<NormalRng> = configs
                .iter()
                .map(|c| NormalRng::new(c.seed ^ VAL_STREAM))
                .collect();
            let nv = val_x.size()[0];
            let mut parts = Vec::new();
            for s0 in (0..nv).step_by(VAL_CHUNK as usize) {
                let len = VAL_CHUNK.min(nv - s0);
                let xv = val_x
                    .narrow(0, s0, len)
                    .unsqueeze(0)
                    .expand([num_seeds as i64, len, f as i64], false)
                    .contiguous();
                parts.push(head.predictive_log_probs(&xv, config.val_samples, &mut val_rngs));
            }
            let log_probs = Tensor::cat(&parts, 1); // [S, Nv, K]
            let yv = val_y
                .unsqueeze(0)
                .expand([num_seeds as i64, nv], false)
                .contiguous();
            let xv = val_x
                .unsqueeze(0)
                .expand([num_seeds as i64, nv, f as i64], false)
                .contiguous();
            let seed_loss = seed_losses(
                kind,
                &loss,
                &head.forward_samples(&xv, 1, &mut val_rngs),
                &yv,
            )?;
            (0..num_seeds)
                .map(|s| {
                    let lp = log_probs.get(s as i64);
                    let nll = -lp
                        .gather(1, &val_y.unsqueeze(1), false)
                        .mean(Kind::Double)
                        .double_value(&[]);
                    let acc = lp
                        .argmax(1, false)
                        .eq_tensor(&val_y)
                        .to_kind(Kind::Double)
                        .mean(Kind::Double)
                        .double_value(&[]);
                    Ok((nll, acc, seed_loss[s].double_value(&[])))
                })
                .collect()
        })?;
        let seconds = start.elapsed().as_secs_f64();
        for (s, (val_nll, val_accuracy, val_seed_loss)) in stats.into_iter().enumerate() {
            let st = EpochStats {
                epoch,
                train_loss: loss_sums[s] / n as f64,
                val_nll,
                val_accuracy,
                val_seed_loss,
                seconds,
            };
            let criterion = match config.selection {
                Selection::ValNll => val_nll,
                Selection::SeedLoss => val_seed_loss,
            };
            if !criterion.is_finite() {
                return Err(Stage2Error::Config(format!(
                    "seed {}: validation criterion is {criterion} at epoch {epoch}",
                    configs[s].seed
                )));
            }
            if best[s].as_ref().is_none_or(|(b, _, _)| criterion < *b) {
                let snapshot = stacked
                    .iter()
                    .map(|(name, t)| (name.clone(), t.get(s as i64).detach().copy()))
                    .collect();
                best[s] = Some((criterion, epoch, snapshot));
            }
            on_epoch(configs[s].seed, &st);
            histories[s].push(st);
        }
    }
    // One ordinary head per seed, with the selected epoch's weights.
    let mut out = Vec::with_capacity(num_seeds);
    for (s, (c, history)) in configs.iter().zip(histories).enumerate() {
        let (_, best_epoch, snapshot) = best[s].take().expect("at least one epoch ran");
        let vs = nn::VarStore::new(device);
        let head = decal_models::seeded(c.seed as i64, || c.head.build(&vs.root()))?;
        let mut vars = vs.variables();
        tch::no_grad(|| {
            for (name, value) in &snapshot {
                vars.get_mut(name)
                    .expect("stacked names come from the same head config")
                    .copy_(value);
            }
        });
        out.push(TrainedHead {
            vs,
            head,
            config: c.clone(),
            best_epoch,
            history,
        });
    }
    Ok(out)
}
