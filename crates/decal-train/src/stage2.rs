//! Stage 2: training a TST / V-TST / REINIT head on frozen features (seed-system.md §6–§8).
//!
//! Recipe (seed defaults, all configurable in [`Stage2Config`]): Adam (β = (0.9, 0.999), ε = 1e-8, no
//! weight decay), lr 1e-4 constant, batch 256, 40 epochs; loss = the configured classification loss
//! (CE / focal / adaptive focal from [`crate::losses`]) + `KL/Z` for V-TST (§7.2), averaged over the
//! `train_samples` latent draws and the batch.
//!
//! Differences from the seed, each a named option:
//! - **Checkpoint selection** by the validation NLL of the *predictive distribution* (V-TST: mean of
//!   `val_samples` softmaxes with a fixed evaluation seed, so epochs are compared on common random
//!   numbers) — what the authors' README says is correct. The seed's single-sample `loss + KL/Z`
//!   criterion is [`Selection::SeedLoss`].
//! - **Shuffling**: every epoch visits the training features in a fresh seeded order; the seed's fixed
//!   order (BUG-5) is `shuffle = false`.
//! - The validation features are un-augmented (BUG-6 fixed) because the cache holds test-transform
//!   features; the exact mode ([`TrainSource::PerEpoch`]) feeds freshly augmented training features.
//!
//! Earliest epoch wins ties, as in Lightning's `ModelCheckpoint(mode="min")`.

use std::path::{Path, PathBuf};

use decal_core::{write_json_atomic, CoreError, Provenance};
use decal_models::heads::{Head, HeadConfig, HeadError, HeadKind, NormalRng};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::features::FeatureSet;
use crate::losses::{LossConfig, LossError};

/// Errors of stage-2 training and of head checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum Stage2Error {
    /// The head configuration is invalid or does not fit the features.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The loss configuration is invalid.
    #[error("stage-2 loss: {0}")]
    Loss(#[from] LossError),
    /// A stage-2 option is out of range.
    #[error("stage-2 config: {0}")]
    Config(String),
    /// Filesystem error.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// libtorch error while saving or loading weights.
    #[error("head checkpoint {path}: {source}")]
    Tch {
        /// The weights file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: tch::TchError,
    },
    /// The checkpoint's JSON cannot be parsed.
    #[error("head checkpoint {path}: invalid JSON: {source}")]
    Json {
        /// The config file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A feature source failed (exact mode).
    #[error("stage-2 features: {0}")]
    Features(String),
    /// Training diverged.
    #[error("stage-2 training diverged at epoch {epoch}: loss is {value}")]
    NonFinite {
        /// 0-based epoch.
        epoch: usize,
        /// The offending value.
        value: f64,
    },
}

/// Checkpoint-selection rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// Lowest validation NLL of the predictive distribution (default).
    #[default]
    ValNll,
    /// The seed's rule: lowest validation loss as trained (one latent sample, `loss + KL/Z`; Q-8).
    SeedLoss,
}

/// Everything that determines a trained head. Serialised, fully resolved, into its checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage2Config {
    /// Head architecture.
    pub head: HeadConfig,
    /// Classification loss in stage 2 (independent of the stage-1 loss).
    #[serde(default)]
    pub loss: LossConfig,
    /// Epochs (seed: 40).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Mini-batch size (seed: 256).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Adam learning rate, constant (seed: 1e-4).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// V-TST latent samples per training example, S (seed `--train_samples`, default 1).
    #[serde(default = "one")]
    pub train_samples: usize,
    /// V-TST samples m for the validation predictive used by [`Selection::ValNll`].
    #[serde(default = "default_val_samples")]
    pub val_samples: usize,
    /// Checkpoint-selection rule.
    #[serde(default)]
    pub selection: Selection,
    /// Reshuffle the training features every epoch (false = the seed's fixed order, BUG-5).
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Seed of the head's initialisation, the shuffling and the ε draws.
    pub seed: u64,
}

fn default_epochs() -> usize {
    40
}
fn default_batch_size() -> usize {
    256
}
fn default_lr() -> f64 {
    1e-4
}
fn one() -> usize {
    1
}
fn default_val_samples() -> usize {
    10
}
fn yes() -> bool {
    true
}

impl Stage2Config {
    /// The seed's recipe for `head` with the given seed.
    pub fn seed_recipe(head: HeadConfig, seed: u64) -> Self {
        Stage2Config {
            head,
            loss: LossConfig::CrossEntropy,
            epochs: 40,
            batch_size: 256,
            lr: 1e-4,
            train_samples: 1,
            val_samples: 10,
            selection: Selection::ValNll,
            shuffle: true,
            seed,
        }
    }

    /// Checks ranges and the head.
    pub fn validate(&self) -> Result<(), Stage2Error> {
        self.head.validate()?;
        self.loss.build()?;
        if self.epochs == 0 || self.batch_size == 0 || self.train_samples == 0 {
            return Err(Stage2Error::Config(
                "epochs, batch_size and train_samples must be at least 1".into(),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Stage2Error::Config(format!(
                "lr must be a positive number, got {}",
                self.lr
            )));
        }
        Ok(())
    }
}

/// Per-epoch training record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss (classification + KL/Z) over examples.
    pub train_loss: f64,
    /// Validation NLL of the predictive distribution (nats).
    pub val_nll: f64,
    /// Validation accuracy of the predictive distribution.
    pub val_accuracy: f64,
    /// Validation loss as the seed computes it (one sample, loss + KL/Z).
    pub val_seed_loss: f64,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
}

/// Where the training features come from.
pub enum TrainSource<'a> {
    /// Cached features (each epoch reshuffled if the config says so).
    Cached(&'a FeatureSet),
    /// Features recomputed every epoch from augmented images (exact mode): the closure returns the
    /// epoch's features already in batch order, so they are consumed sequentially.
    PerEpoch(&'a mut dyn FnMut(usize) -> Result<EpochFeatures, Stage2Error>),
}

/// One epoch's features from a [`TrainSource::PerEpoch`] closure.
#[derive(Debug)]
pub struct EpochFeatures {
    /// The training features, in batch order.
    pub train: FeatureSet,
    /// This epoch's validation features, when they change from epoch to epoch (the seed's augmented
    /// validation images, BUG-6, or a body whose BatchNorm statistics drift, BUG-7); `None`: the fixed
    /// validation set passed to [`train`].
    pub val: Option<FeatureSet>,
}

/// A trained head with the weights of its selected epoch loaded.
#[derive(Debug)]
pub struct TrainedHead {
    /// The variables (on the training device).
    pub vs: nn::VarStore,
    /// The head.
    pub head: Head,
    /// The config it was trained with.
    pub config: Stage2Config,
    /// Selected epoch (0-based).
    pub best_epoch: usize,
    /// Every epoch's statistics.
    pub history: Vec<EpochStats>,
}

/// The selected epoch so far: (criterion, epoch, copies of every variable).
type BestEpoch = (f64, usize, Vec<(String, Tensor)>);

/// Trains a head; `on_epoch` is called after every epoch (for progress output).
pub fn train(
    config: &Stage2Config,
    mut source: TrainSource<'_>,
    val: &FeatureSet,
    device: Device,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<TrainedHead, Stage2Error> {
    config.validate()?;
    config.head.check_feature_dim(val.feature_dim as i64)?;
    let loss = config.loss.build()?;
    let vs = nn::VarStore::new(device);
    let head = decal_models::seeded(config.seed as i64, || config.head.build(&vs.root()))?;
    let mut opt = nn::Adam::default()
        .build(&vs, config.lr)
        .map_err(|source| Stage2Error::Tch {
            path: PathBuf::from("<optimizer>"),
            source,
        })?;
    // Independent streams for shuffling and for ε, both derived from the run seed.
    let mut shuffle_rng = NormalRng::new(config.seed ^ 0x5348_5546_464c_4521);
    let mut eps_rng = NormalRng::new(config.seed ^ 0x4550_5349_4c4f_4e21);
    let (val_x, val_y) = val.to_tensors(device);

    let mut best: Option<BestEpoch> = None;
    let mut history = Vec::with_capacity(config.epochs);
    for epoch in 0..config.epochs {
        let start = std::time::Instant::now();
        let owned;
        let mut epoch_val = None;
        let (train_set, order): (&FeatureSet, Vec<usize>) = match &mut source {
            TrainSource::Cached(set) => {
                let order = if config.shuffle {
                    shuffle_rng.permutation(set.len())
                } else {
                    (0..set.len()).collect()
                };
                (*set, order)
            }
            TrainSource::PerEpoch(f) => {
                let EpochFeatures { train, val } = f(epoch)?;
                owned = train;
                epoch_val = val;
                let n = owned.len();
                (&owned, (0..n).collect())
            }
        };
        let epoch_val_tensors = match &epoch_val {
            Some(v) => {
                config.head.check_feature_dim(v.feature_dim as i64)?;
                Some(v.to_tensors(device))
            }
            None => None,
        };
        let (val_x, val_y) = epoch_val_tensors
            .as_ref()
            .map_or((&val_x, &val_y), |(x, y)| (x, y));
        config
            .head
            .check_feature_dim(train_set.feature_dim as i64)?;
        let (train_x, train_y) = train_set.to_tensors(device);
        let mut loss_sum = 0.0;
        for chunk in order.chunks(config.batch_size) {
            let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>())
                .to_device(device);
            let x = train_x.index_select(0, &idx);
            let y = train_y.index_select(0, &idx);
            let step_loss = batch_loss(&head, &loss, &x, &y, config.train_samples, &mut eps_rng)?;
            let value = step_loss.double_value(&[]);
            if !value.is_finite() {
                return Err(Stage2Error::NonFinite { epoch, value });
            }
            opt.backward_step(&step_loss);
            loss_sum += value * chunk.len() as f64;
        }
        let (val_nll, val_accuracy, val_seed_loss) = tch::no_grad(|| -> Result<_, Stage2Error> {
            // A fixed evaluation seed: every epoch's predictive uses the same ε, so epochs differ only
            // in their weights.
            let mut val_rng = NormalRng::new(config.seed ^ 0x56414c49_44415445);
            let log_probs = predict_log_probs(&head, val_x, config.val_samples, &mut val_rng, 4096);
            let nll = -log_probs
                .gather(1, &val_y.unsqueeze(1), false)
                .mean(Kind::Double)
                .double_value(&[]);
            let acc = log_probs
                .argmax(1, false)
                .eq_tensor(val_y)
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[]);
            let seed_loss =
                batch_loss(&head, &loss, val_x, val_y, 1, &mut val_rng)?.double_value(&[]);
            Ok((nll, acc, seed_loss))
        })?;
        let stats = EpochStats {
            epoch,
            train_loss: loss_sum / train_set.len().max(1) as f64,
            val_nll,
            val_accuracy,
            val_seed_loss,
            seconds: start.elapsed().as_secs_f64(),
        };
        let criterion = match config.selection {
            Selection::ValNll => val_nll,
            Selection::SeedLoss => val_seed_loss,
        };
        if !criterion.is_finite() {
            return Err(Stage2Error::NonFinite {
                epoch,
                value: criterion,
            });
        }
        if best.as_ref().is_none_or(|(b, _, _)| criterion < *b) {
            let snapshot = vs
                .variables()
                .into_iter()
                .map(|(k, v)| (k, v.detach().copy()))
                .collect();
            best = Some((criterion, epoch, snapshot));
        }
        on_epoch(&stats);
        history.push(stats);
    }
    let (_, best_epoch, snapshot) = best.expect("at least one epoch ran");
    let mut vars = vs.variables();
    tch::no_grad(|| {
        for (name, value) in &snapshot {
            vars.get_mut(name)
                .expect("snapshot names come from this VarStore")
                .copy_(value);
        }
    });
    Ok(TrainedHead {
        vs,
        head,
        config: config.clone(),
        best_epoch,
        history,
    })
}

/// Batch-mean training loss: classification loss averaged over samples and examples, plus mean KL/Z.
fn batch_loss(
    head: &Head,
    loss: &crate::losses::Loss,
    x: &Tensor,
    y: &Tensor,
    num_samples: usize,
    rng: &mut NormalRng,
) -> Result<Tensor, Stage2Error> {
    let samples = head.forward_samples(x, num_samples, rng);
    let size = samples.logits.size(); // [S, B, K]
    let logits = samples.logits.reshape([size[0] * size[1], size[2]]);
    let labels = y.repeat([size[0]]);
    // With S samples, the mean over the S·B rows is the seed's "average over samples and batch" (§7.2).
    let class = loss.compute(&logits, &labels)?;
    Ok(if head.config().kind == HeadKind::Vtst {
        class + samples.kl.mean(Kind::Float)
    } else {
        class
    })
}

/// Log predictive probabilities `[N, K]` for features `[N, F]`, in chunks of `chunk` rows (V-TST: m samples,
/// mean of softmaxes; m = 0 decodes μ). Runs without gradients.
pub fn predict_log_probs(
    head: &Head,
    features: &Tensor,
    num_samples: usize,
    rng: &mut NormalRng,
    chunk: i64,
) -> Tensor {
    tch::no_grad(|| {
        let n = features.size()[0];
        let parts: Vec<Tensor> = (0..n)
            .step_by(chunk.max(1) as usize)
            .map(|start| {
                let len = chunk.min(n - start);
                head.predictive_log_probs(&features.narrow(0, start, len), num_samples, rng)
            })
            .collect();
        Tensor::cat(&parts, 0)
    })
}

/// `config.json` of a head checkpoint: the resolved config plus training metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadCheckpointMeta {
    /// The full stage-2 config.
    pub config: Stage2Config,
    /// Selected epoch (0-based).
    pub best_epoch: usize,
    /// Every epoch's statistics.
    pub history: Vec<EpochStats>,
    /// Free-form description of the features the head was trained on (e.g. their cache keys).
    pub features: serde_json::Value,
    /// Who wrote it.
    pub provenance: Provenance,
}

/// File names inside a head checkpoint directory.
pub const HEAD_WEIGHTS: &str = "model.safetensors";
/// See [`HEAD_WEIGHTS`].
pub const HEAD_CONFIG: &str = "config.json";

/// Writes `model.safetensors` then `config.json` (each atomically; `config.json` last, so a directory with
/// a `config.json` holds a complete checkpoint).
pub fn save_head(
    dir: &Path,
    trained: &TrainedHead,
    features: serde_json::Value,
) -> Result<HeadCheckpointMeta, Stage2Error> {
    std::fs::create_dir_all(dir).map_err(|source| CoreError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let weights = dir.join(HEAD_WEIGHTS);
    // The temporary name keeps the `.safetensors` extension: tch picks the format from it.
    let tmp = dir.join(format!(".tmp-{}-{HEAD_WEIGHTS}", std::process::id()));
    trained.vs.save(&tmp).map_err(|source| Stage2Error::Tch {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &weights).map_err(|source| CoreError::Io {
        path: weights.clone(),
        source,
    })?;
    let meta = HeadCheckpointMeta {
        config: trained.config.clone(),
        best_epoch: trained.best_epoch,
        history: trained.history.clone(),
        features,
        provenance: Provenance::capture(),
    };
    write_json_atomic(&dir.join(HEAD_CONFIG), &meta)?;
    Ok(meta)
}

/// Loads a head checkpoint written by [`save_head`].
pub fn load_head(
    dir: &Path,
    device: Device,
) -> Result<(nn::VarStore, Head, HeadCheckpointMeta), Stage2Error> {
    let cpath = dir.join(HEAD_CONFIG);
    let text = std::fs::read_to_string(&cpath).map_err(|source| CoreError::Io {
        path: cpath.clone(),
        source,
    })?;
    let meta: HeadCheckpointMeta =
        serde_json::from_str(&text).map_err(|source| Stage2Error::Json {
            path: cpath.clone(),
            source,
        })?;
    let mut vs = nn::VarStore::new(device);
    let head = meta.config.head.build(&vs.root())?;
    let wpath = dir.join(HEAD_WEIGHTS);
    vs.load(&wpath).map_err(|source| Stage2Error::Tch {
        path: wpath.clone(),
        source,
    })?;
    Ok((vs, head, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian blobs in 4-D, linearly separable with margin.
    fn blobs(n: usize, seed: u64) -> FeatureSet {
        let mut rng = NormalRng::new(seed);
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let y = (i % 3) as i64;
            for d in 0..4 {
                let centre = if d as i64 == y { 2.0 } else { 0.0 };
                features.push((centre + 0.7 * rng.next_normal()) as f32);
            }
            labels.push(y);
        }
        FeatureSet {
            features,
            labels,
            feature_dim: 4,
        }
    }

    fn quick(kind: HeadKind, seed: u64) -> Stage2Config {
        let head = match kind {
            HeadKind::Tst => HeadConfig::tst(4, 4, 3),
            HeadKind::Vtst => HeadConfig::vtst(4, 4, 3),
            HeadKind::Reinit => HeadConfig::reinit(4, 3),
        };
        Stage2Config {
            epochs: 15,
            batch_size: 32,
            lr: 1e-2,
            ..Stage2Config::seed_recipe(head, seed)
        }
    }

    #[test]
    fn every_head_learns_separable_features_and_selects_the_best_epoch() {
        let train_set = blobs(600, 1);
        let val = blobs(300, 2);
        for kind in [HeadKind::Tst, HeadKind::Vtst, HeadKind::Reinit] {
            let config = quick(kind, 3);
            let trained = train(
                &config,
                TrainSource::Cached(&train_set),
                &val,
                Device::Cpu,
                &mut |_| {},
            )
            .unwrap();
            let best = &trained.history[trained.best_epoch];
            let min = trained
                .history
                .iter()
                .map(|s| s.val_nll)
                .fold(f64::INFINITY, f64::min);
            assert_eq!(
                best.val_nll, min,
                "{kind}: selected epoch is not the NLL minimum"
            );
            // Chance NLL is ln 3 ≈ 1.0986.
            assert!(
                best.val_nll < 0.5 && best.val_accuracy > 0.85,
                "{kind}: {best:?}"
            );
            // The loaded weights are those of the selected epoch: recomputing its NLL gives the same value.
            let (x, y) = val.to_tensors(Device::Cpu);
            let mut rng = NormalRng::new(config.seed ^ 0x56414c49_44415445);
            let lp = predict_log_probs(&trained.head, &x, config.val_samples, &mut rng, 4096);
            let nll = -lp
                .gather(1, &y.unsqueeze(1), false)
                .mean(Kind::Double)
                .double_value(&[]);
            assert!(
                (nll - best.val_nll).abs() < 1e-9,
                "{kind}: {nll} vs {}",
                best.val_nll
            );
        }
    }

    #[test]
    fn same_seed_same_head_and_checkpoint_round_trip() {
        let train_set = blobs(200, 5);
        let val = blobs(100, 6);
        let config = Stage2Config {
            epochs: 3,
            ..quick(HeadKind::Vtst, 9)
        };
        let a = train(
            &config,
            TrainSource::Cached(&train_set),
            &val,
            Device::Cpu,
            &mut |_| {},
        )
        .unwrap();
        let b = train(
            &config,
            TrainSource::Cached(&train_set),
            &val,
            Device::Cpu,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(
            a.history.iter().map(|s| s.val_nll).collect::<Vec<_>>(),
            b.history.iter().map(|s| s.val_nll).collect::<Vec<_>>()
        );

        let dir = tempfile::tempdir().unwrap();
        save_head(dir.path(), &a, serde_json::json!({"train": "blobs"})).unwrap();
        let (_vs, head, meta) = load_head(dir.path(), Device::Cpu).unwrap();
        assert_eq!(meta.config, config);
        let (x, _) = val.to_tensors(Device::Cpu);
        let p1 = predict_log_probs(&a.head, &x, 5, &mut NormalRng::new(1), 64);
        let p2 = predict_log_probs(&head, &x, 5, &mut NormalRng::new(1), 4096);
        assert!(p1.allclose(&p2, 1e-6, 1e-6, false));
    }

    #[test]
    fn feature_dim_mismatch_is_a_clear_error() {
        let train_set = blobs(50, 1);
        let val = blobs(50, 2);
        let mut config = quick(HeadKind::Tst, 0);
        config.head.feature_dim = 640;
        let err = train(
            &config,
            TrainSource::Cached(&train_set),
            &val,
            Device::Cpu,
            &mut |_| {},
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "head expects 640-dimensional features but the backbone gives 4"
        );
    }

    #[test]
    fn per_epoch_source_is_consumed_in_order() {
        let val = blobs(60, 2);
        let mut calls = Vec::new();
        let mut f = |epoch: usize| -> Result<EpochFeatures, Stage2Error> {
            calls.push(epoch);
            Ok(EpochFeatures {
                train: blobs(90, 10 + epoch as u64),
                val: None,
            })
        };
        let config = Stage2Config {
            epochs: 3,
            ..quick(HeadKind::Tst, 1)
        };
        let trained = train(
            &config,
            TrainSource::PerEpoch(&mut f),
            &val,
            Device::Cpu,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(calls, vec![0, 1, 2]);
        assert_eq!(trained.history.len(), 3);
    }

    #[test]
    fn per_epoch_validation_features_replace_the_fixed_ones() {
        let val = blobs(60, 2);
        let config = Stage2Config {
            epochs: 3,
            ..quick(HeadKind::Vtst, 1)
        };
        let run = |epoch_val: &dyn Fn(usize) -> Option<FeatureSet>| {
            let mut f = |epoch: usize| -> Result<EpochFeatures, Stage2Error> {
                Ok(EpochFeatures {
                    train: blobs(90, 10 + epoch as u64),
                    val: epoch_val(epoch),
                })
            };
            let t = train(
                &config,
                TrainSource::PerEpoch(&mut f),
                &val,
                Device::Cpu,
                &mut |_| {},
            )
            .unwrap();
            t.history.iter().map(|h| h.val_nll).collect::<Vec<_>>()
        };
        let fixed = run(&|_| None);
        // The same features given per epoch: the same numbers, bit for bit.
        assert_eq!(run(&|_| Some(blobs(60, 2))), fixed);
        // Other features in epoch 1 only: that epoch's validation changes, the others do not.
        let other = run(&|e| (e == 1).then(|| blobs(60, 99)));
        assert_eq!((other[0], other[2]), (fixed[0], fixed[2]));
        assert_ne!(other[1], fixed[1]);
    }
}
