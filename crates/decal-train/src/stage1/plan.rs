//! The stage-1 plan ([`Stage1Plan`], the run's `config.toml`) and its one resolution
//! ([`Stage1Plan::resolve`]: defaults → dataset defaults → a config table → the data settings), shared by
//! `decal train` and `decal run`; the keys a resumed run may change ([`RESUMABLE_KEYS`]) and the rest,
//! derived from the plan's fields ([`Stage1Plan::changed_keys`]).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::Stage1Error;
use crate::losses::{AdaptiveMode, LossConfig};
use crate::optim::OptimizerConfig;
use crate::precision::Precision;
use crate::schedule::ScheduleConfig;

/// Which validation quantity selects the `best/` checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// Validation negative log-likelihood (the authors' README: "always early stop on validation NLL").
    #[default]
    ValNll,
    /// Validation value of the training criterion (the seed's `valid_loss_epoch`; focal units for FL).
    ValLoss,
    /// No selection: `best/` holds the final epoch's weights (the network as training left it, e.g. past its
    /// validation-NLL minimum, the over-confident regime of a long run; patience never stops such a run).
    Last,
}

/// Named switches that reproduce one seed behaviour each (seed-system.md §15, §16 "replicate" mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compat {
    /// BUG-5: the training order is the fixed split order every epoch (no shuffling).
    SeedUnshuffled,
    /// BUG-6: validation images get the training augmentation.
    SeedAugmentedVal,
    /// select the checkpoint on the validation loss (training criterion) instead of NLL.
    SeedValLoss,
    /// BUG-10: the adaptive focal loss errors where the seed crashes instead of using the last bin's γ.
    SeedFocal,
    /// All of the above.
    Seed,
}

impl Compat {
    /// Parses a comma-separated list (`seed-unshuffled,seed-augmented-val`).
    pub fn parse_list(list: &str) -> Result<Vec<Compat>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s {
                "seed-unshuffled" => Ok(Compat::SeedUnshuffled),
                "seed-augmented-val" => Ok(Compat::SeedAugmentedVal),
                "seed-val-loss" => Ok(Compat::SeedValLoss),
                "seed-focal" => Ok(Compat::SeedFocal),
                "seed" => Ok(Compat::Seed),
                other => Err(format!(
                    "unknown compat option {other:?}; known: seed-unshuffled, seed-augmented-val, seed-val-loss, \
                     seed-focal, seed (all)"
                )),
            })
            .collect()
    }
}

/// A resolved stage-1 training plan: the run's `config.toml`. Every field is explicit in the file;
/// `0` means "off" / "all" where documented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stage1Plan {
    /// Run name (directory name under the output root).
    pub name: String,
    /// Architecture preset (`decal_models::ArchConfig::preset`): `cnn`, `wrn-28-10`, `wrn-16-4`, `resnet50`, …
    pub model: String,
    /// Dataset name (`cifar10`, `cifar100`, `svhn`, `mnist`, `fashion-mnist`, `tinyimagenet`, `imagefolder`).
    pub dataset: String,
    /// Directory holding the dataset in one of its official layouts.
    pub data_dir: PathBuf,
    /// Fraction of the training set used for training; the rest is validation (seed: 0.8, CIFAR-100 0.95).
    pub train_fraction: f64,
    /// Seed of the split's generator (seed: 1, independent of the training seed).
    pub split_seed: u64,
    /// Use only N images of the training part (0 = all): quick runs. N evenly spaced entries of the
    /// part's (random) order, as every `limit` ([`decal_data::split::evenly_spaced`]).
    pub limit_train: usize,
    /// Use only N images of the validation part (0 = all), chosen the same way.
    pub limit_val: usize,
    /// Number of epochs (seed: 600 for bases).
    pub epochs: usize,
    /// Training batch size (seed: 256).
    pub batch_size: usize,
    /// Batch size for validation (does not change results).
    pub eval_batch_size: usize,
    /// Peak learning rate (seed: 1e-4).
    pub lr: f64,
    /// Optimiser (seed: Adam, betas 0.9/0.999, eps 1e-8, no weight decay).
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule (seed: constant).
    pub schedule: ScheduleConfig,
    /// Linear warm-up length in epochs (0 = none), before the schedule.
    pub warmup_epochs: f64,
    /// Clip gradients to this global L2 norm (0 = off; the seed does not clip).
    pub clip_grad: f64,
    /// Explicit L2 penalty λ·Σθ² added to the training loss (0 = off; §7.4). Equivalent to coupled weight
    /// decay 2λ; independent of the optimiser's `weight_decay`.
    pub l2: f64,
    /// Training loss (seed: `ce`).
    pub loss: LossConfig,
    /// Training seed: weight init, shuffling, augmentation, dropout.
    pub seed: u64,
    /// Device: `cpu`, `cuda`, `cuda:<i>`, `auto`.
    pub device: String,
    /// libtorch CPU threads (0 = all cores).
    pub threads: usize,
    /// Shuffle the training order every epoch (seed: false, BUG-5).
    pub shuffle: bool,
    /// Random crop + horizontal flip on training images (CIFAR-10/100 in the seed; off for other datasets).
    pub augment: bool,
    /// Apply the training augmentation to validation images too (seed: true, BUG-6).
    pub augment_val: bool,
    /// Checkpoint-selection criterion (seed: `val-loss`).
    pub selection: Selection,
    /// Stop after this many epochs without improvement of the selection criterion (0 = never; seed: never).
    pub patience: usize,
    /// Training precision: `fp32` (seed), `bf16` (autocast, fast on AMX CPUs and recent GPUs) or `fp16`
    /// (autocast + dynamic loss scaling, CUDA). See [`crate::precision`].
    pub precision: Precision,
}

impl Default for Stage1Plan {
    fn default() -> Self {
        Stage1Plan {
            name: "stage1".into(),
            model: "cnn".into(),
            dataset: "cifar10".into(),
            data_dir: PathBuf::from("data"),
            train_fraction: 0.8,
            split_seed: 1,
            limit_train: 0,
            limit_val: 0,
            epochs: 10,
            batch_size: 256,
            eval_batch_size: 512,
            lr: 1e-4,
            optimizer: OptimizerConfig::seed_adam(),
            schedule: ScheduleConfig::Constant,
            warmup_epochs: 0.0,
            clip_grad: 0.0,
            l2: 0.0,
            loss: LossConfig::CrossEntropy,
            seed: 0,
            device: "cpu".into(),
            threads: 0,
            shuffle: true,
            augment: true,
            augment_val: false,
            selection: Selection::ValNll,
            patience: 0,
            precision: Precision::Fp32,
        }
    }
}

impl Stage1Plan {
    /// Parses a `config.toml` text; unknown keys are errors naming the key.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, Stage1Error> {
        toml::from_str(text).map_err(|e| Stage1Error::Config {
            path: path.to_path_buf(),
            problem: e.to_string().trim().replace('\n', " "),
        })
    }

    /// Reads a `config.toml` file.
    pub fn read(path: &Path) -> Result<Self, Stage1Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Stage1Error::Config {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        Self::from_toml(&text, path)
    }

    /// The TOML text of the resolved plan.
    pub fn to_toml(&self) -> Result<String, Stage1Error> {
        toml::to_string_pretty(self).map_err(|e| Stage1Error::Config {
            path: PathBuf::from("config.toml"),
            problem: e.to_string(),
        })
    }

    /// Applies compatibility switches by setting the fields they stand for.
    pub fn apply_compat(&mut self, compat: &[Compat]) {
        for c in compat {
            let all = *c == Compat::Seed;
            if all || *c == Compat::SeedUnshuffled {
                self.shuffle = false;
            }
            if all || *c == Compat::SeedAugmentedVal {
                self.augment_val = true;
            }
            if all || *c == Compat::SeedValLoss {
                self.selection = Selection::ValLoss;
            }
            if all || *c == Compat::SeedFocal {
                if let LossConfig::AdaptiveFocal { mode, .. } = &mut self.loss {
                    *mode = AdaptiveMode::Seed;
                }
            }
        }
    }

    /// Dataset-dependent defaults of the seed: CIFAR-100 trains on 95 % (§4.3,
    /// `decal_data::split::seed_train_fraction`); only CIFAR gets crop+flip (§4.2). Call after choosing the
    /// dataset and before applying explicit overrides.
    pub fn apply_dataset_defaults(&mut self) {
        let ds = canonical_dataset(&self.dataset);
        self.train_fraction = default_train_fraction(&self.dataset);
        self.augment = matches!(ds.as_str(), "cifar10" | "cifar100");
    }

    /// **The** resolution of a stage-1 plan (one owner, issue #11), used by `decal train` (its
    /// `--config` file, or an empty table) and by `decal run` (`[backbone.train]`, through the recipe):
    /// the defaults, then the dataset's defaults ([`Stage1Plan::apply_dataset_defaults`]: e.g. no
    /// crop/flip for SVHN and MNIST, 95 % training part for CIFAR-100), then every key of `table`
    /// (explicit keys win; unknown keys are errors naming the key and `path`). `dataset` chooses the
    /// dataset defaults (a `dataset` key in `table` still sets the plan's dataset). What a command sets
    /// afterwards goes on top: `decal train`'s flags, `decal run`'s data ([`Stage1Plan::with_data`]).
    pub fn resolve(dataset: &str, table: toml::Table, path: &Path) -> Result<Self, Stage1Error> {
        let mut plan = Stage1Plan {
            dataset: dataset.to_string(),
            ..Stage1Plan::default()
        };
        plan.apply_dataset_defaults();
        let mut base: toml::Table =
            toml::from_str(&plan.to_toml()?).map_err(|e| Stage1Error::Config {
                path: path.to_path_buf(),
                problem: e.to_string(),
            })?;
        base.extend(table);
        let merged = toml::to_string(&base).map_err(|e| Stage1Error::Config {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        Self::from_toml(&merged, path)
    }

    /// The plan with the data settings of an experiment's `[data]` (dataset, directory, split, limits)
    /// put on top; `train_fraction: None` takes the dataset's default.
    pub fn with_data(mut self, data: &DataSettings) -> Self {
        self.dataset = data.dataset.clone();
        self.data_dir = data.data_dir.clone();
        self.train_fraction = data
            .train_fraction
            .unwrap_or_else(|| default_train_fraction(&data.dataset));
        self.split_seed = data.split_seed;
        self.limit_train = data.limit_train;
        self.limit_val = data.limit_val;
        self
    }

    /// The plan that only describes `data`'s split (the default plan [`Stage1Plan::with_data`]): what
    /// `Stage1Data::from_set` needs to rebuild the train / validation parts a backbone trained with `data`
    /// used, e.g. for the features of an experiment.
    pub fn for_split(data: &DataSettings) -> Self {
        Stage1Plan::default().with_data(data)
    }

    /// The keys of the plan (as in `config.toml`) whose values differ between `self` and `other`, except
    /// [`RESUMABLE_KEYS`]: what a resumed run may not change. Derived from the plan's fields, so a new
    /// field is immutable on resume without being listed anywhere.
    pub fn changed_keys(&self, other: &Stage1Plan) -> Result<Vec<String>, Stage1Error> {
        let table = |p: &Stage1Plan| -> Result<toml::Table, Stage1Error> {
            toml::from_str(&p.to_toml()?).map_err(|e| Stage1Error::Config {
                path: PathBuf::from("config.toml"),
                problem: e.to_string(),
            })
        };
        let (a, b) = (table(self)?, table(other)?);
        let mut keys: Vec<String> = a
            .keys()
            .chain(b.keys())
            .filter(|k| !RESUMABLE_KEYS.contains(&k.as_str()))
            .filter(|k| a.get(k.as_str()) != b.get(k.as_str()))
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), Stage1Error> {
        let bad = |m: String| Err(Stage1Error::Plan(m));
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return bad(format!(
                "run name {:?} must be a plain directory name",
                self.name
            ));
        }
        if self.epochs == 0 {
            return bad("epochs must be >= 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch sizes must be >= 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr {} must be > 0", self.lr));
        }
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) {
            return bad(format!(
                "train_fraction {} must be in (0, 1)",
                self.train_fraction
            ));
        }
        if [self.warmup_epochs, self.clip_grad, self.l2]
            .iter()
            .any(|v| v.is_nan() || *v < 0.0)
        {
            return bad("warmup_epochs, clip_grad and l2 must be >= 0".into());
        }
        self.optimizer.validate()?;
        self.loss.build()?;
        Ok(())
    }
}

/// The keys of a plan a resumed run may change (`decal train --resume --epochs/--device/--threads`):
/// extending the run, and where and with how many threads it runs. Every other key is fixed by the run.
pub const RESUMABLE_KEYS: [&str; 3] = ["epochs", "device", "threads"];

/// The data a stage-1 plan trains on, as an experiment's `[data]` states it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSettings {
    /// Dataset name.
    pub dataset: String,
    /// Its directory.
    pub data_dir: PathBuf,
    /// Training fraction of the split; `None` = the dataset's default (0.95 for CIFAR-100, else 0.8).
    pub train_fraction: Option<f64>,
    /// Seed of the split's generator.
    pub split_seed: u64,
    /// Images kept of the training part (0 = all; `decal_data::split::limit`).
    pub limit_train: usize,
    /// Images kept of the validation part (0 = all).
    pub limit_val: usize,
}

/// The seed's training fraction of `dataset` (`decal_data::split::seed_train_fraction`; 0.8 for names
/// decal-data does not know).
pub fn default_train_fraction(dataset: &str) -> f64 {
    decal_data::DatasetName::parse(dataset)
        .map(decal_data::split::seed_train_fraction)
        .unwrap_or(0.8)
}

/// `(mean, std)` per channel of [`decal_data::transforms::Normalize::for_dataset`], the one normalisation
/// rule (the seed's constants, else 0.5 / 0.5).
pub fn normalization(dataset: &str, channels: usize) -> (Vec<f32>, Vec<f32>) {
    let n = decal_data::transforms::Normalize::for_dataset(dataset, channels);
    (n.mean, n.std)
}

/// Lowercase alphanumerics of a dataset name (`CIFAR-10` → `cifar10`, `tiny-imagenet` → `tinyimagenet`).
pub fn canonical_dataset(name: &str) -> String {
    name.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_toml_roundtrip_and_unknown_key() {
        let plan = Stage1Plan::default();
        let text = plan.to_toml().unwrap();
        let back = Stage1Plan::from_toml(&text, Path::new("c.toml")).unwrap();
        assert_eq!(plan, back);
        let err = Stage1Plan::from_toml("epochs = 3\nlearning_rate = 0.1\n", Path::new("c.toml"))
            .unwrap_err();
        assert!(err.to_string().contains("learning_rate"), "{err}");
    }

    #[test]
    fn compat_switches() {
        let mut plan = Stage1Plan {
            loss: LossConfig::AdaptiveFocal {
                gammas: vec![5.0, 3.0],
                probs: vec![0.2, 1.0],
                mode: AdaptiveMode::Fixed,
            },
            ..Stage1Plan::default()
        };
        plan.apply_compat(&Compat::parse_list("seed").unwrap());
        assert!(!plan.shuffle && plan.augment_val && plan.selection == Selection::ValLoss);
        assert!(matches!(
            plan.loss,
            LossConfig::AdaptiveFocal {
                mode: AdaptiveMode::Seed,
                ..
            }
        ));
        assert!(Compat::parse_list("seed-unshuffled, nope")
            .unwrap_err()
            .contains("nope"));
    }

    #[test]
    fn one_resolution_for_both_commands() {
        let p = Path::new("c.toml");
        let svhn = Stage1Plan::resolve("svhn", toml::Table::new(), p).unwrap();
        assert!(!svhn.augment && svhn.train_fraction == 0.8);
        let c100 = Stage1Plan::resolve("cifar100", toml::Table::new(), p).unwrap();
        assert!(c100.augment && c100.train_fraction == 0.95);
        // Explicit keys win over the dataset defaults; unknown keys name themselves.
        let t: toml::Table = toml::from_str("augment = false\nepochs = 3").unwrap();
        let r = Stage1Plan::resolve("cifar10", t, p).unwrap();
        assert!(!r.augment && r.epochs == 3);
        let t: toml::Table = toml::from_str("learning_rate = 0.1").unwrap();
        let e = Stage1Plan::resolve("cifar10", t, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("learning_rate") && e.contains("c.toml"), "{e}");
        // An experiment's [data] on top; the split plan is the default plan with the same data.
        let data = DataSettings {
            dataset: "cifar100".into(),
            data_dir: PathBuf::from("/d"),
            train_fraction: None,
            split_seed: 3,
            limit_train: 10,
            limit_val: 5,
        };
        let s = Stage1Plan::for_split(&data);
        assert_eq!(
            (s.train_fraction, s.split_seed, s.limit_train, s.limit_val),
            (0.95, 3, 10, 5)
        );
        assert_eq!(s.data_dir, PathBuf::from("/d"));
        let with = r.clone().with_data(&DataSettings {
            train_fraction: Some(0.5),
            ..data
        });
        assert_eq!((with.train_fraction, with.epochs), (0.5, 3));
    }

    #[test]
    fn resume_may_change_only_the_resumable_keys() {
        let a = Stage1Plan::default();
        let mut b = a.clone();
        b.epochs = 99;
        b.device = "cuda:1".into();
        b.threads = 3;
        assert!(a.changed_keys(&b).unwrap().is_empty());
        b.lr = 0.5;
        b.shuffle = false;
        b.optimizer = OptimizerConfig::sgd(0.9, true, 0.0);
        assert_eq!(
            a.changed_keys(&b).unwrap(),
            vec!["lr", "optimizer", "shuffle"]
        );
    }
}
