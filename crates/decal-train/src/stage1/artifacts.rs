//! Stage-1 run-directory artefacts: the file names ([`files`]), provenance, the per-epoch metrics files,
//! the summary, and the `best/` classifier checkpoint ([`save_classifier`]): a standard
//! `decal_models::checkpoint` directory (`model.safetensors` + `config.json` with the architecture, K,
//! dataset, input normalisation, seed, epoch and selection criterion), so `decal eval`, stage 2 and
//! `decal_models::checkpoint::load` rebuild the classifier from it alone; nothing depends on file names
//! (seed BUG-8). Stage-1 specifics (run name, loss) go into `extra`.

use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn::VarStore;

use super::{Selection, Stage1Error};
use crate::checkpoint::{self, CheckpointError, EpochRecord};
use decal_models::checkpoint::{self as mcheckpoint, CheckpointMeta, Normalization};
use decal_models::ArchConfig;

/// Result of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage1Summary {
    /// Run name.
    pub name: String,
    /// Epochs actually run (may be fewer than planned with early stopping).
    pub epochs_run: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Epoch of the `best/` checkpoint.
    pub best_epoch: usize,
    /// Selection criterion (`val-nll` or `val-loss`).
    pub selection: Selection,
    /// Its value at `best_epoch`.
    pub best_value: f64,
    /// The best epoch's record.
    pub best: EpochRecord,
    /// Definition of `val_ece`.
    pub val_ece_definition: String,
    /// Training images, validation images.
    pub num_train: usize,
    /// Validation images.
    pub num_val: usize,
    /// Total wall-clock seconds of this invocation.
    pub seconds: f64,
}

/// Metadata of the `best/` checkpoint beyond the architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestMeta {
    /// Run name.
    pub run: String,
    /// Dataset.
    pub dataset: String,
    /// Training seed.
    pub seed: u64,
    /// 0-based epoch.
    pub epoch: usize,
    /// Selection criterion and its value.
    pub selection: Selection,
    /// Value of the criterion.
    pub value: f64,
    /// Normalisation mean used in training (inputs must be normalised the same way).
    pub mean: Vec<f32>,
    /// Normalisation std.
    pub std: Vec<f32>,
    /// Loss used in training (`ce`, `fl`, `fla`, `ls`).
    pub loss: String,
}

/// File names of the run directory.
pub mod files {
    /// Resolved plan.
    pub const CONFIG: &str = "config.toml";
    /// Provenance.
    pub const PROVENANCE: &str = "provenance.json";
    /// Per-epoch metrics, one JSON object per line.
    pub const METRICS_JSONL: &str = "metrics.jsonl";
    /// Per-epoch metrics as CSV.
    pub const METRICS_CSV: &str = "metrics.csv";
    /// The train/validation split (`decal_data::split::SplitManifest`).
    pub const SPLIT: &str = "split.json";
    /// Written when the run finished.
    pub const SUMMARY: &str = "summary.json";
    /// Best checkpoint directory.
    pub const BEST: &str = "best";
    /// Latest training state directory.
    pub const LAST: &str = "last";
}

/// Provenance of a stage-1 run (`provenance.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage1Provenance {
    /// Process provenance (version, git commit, command line, time, the loaded libtorch and its version).
    #[serde(flatten)]
    pub process: decal_core::Provenance,
    /// The device trained on.
    pub device: String,
    /// libtorch CPU threads.
    pub threads: usize,
    /// Training precision ([`Precision::describe`]).
    pub precision: String,
    /// SHA-256 of the training set's pixels and labels.
    pub data_sha256: String,
    /// SHA-256 of the full split's index lists (as in `split.json`); `limit_train` / `limit_val` in
    /// `config.toml` say which of their images were used.
    pub split_sha256: String,
    /// Number of training / validation images.
    pub num_train: usize,
    /// Validation images.
    pub num_val: usize,
}

pub(super) fn write_metrics(run_dir: &Path, history: &[EpochRecord]) -> Result<(), Stage1Error> {
    let mut jsonl = String::new();
    let mut csv = String::from(
        "epoch,step,lr,train_loss,train_accuracy,val_loss,val_nll,val_accuracy,val_ece,seconds,train_images_per_sec,is_best,skipped_steps\n",
    );
    for r in history {
        jsonl.push_str(&serde_json::to_string(r).expect("epoch records serialise"));
        jsonl.push('\n');
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.epoch,
            r.step,
            r.lr,
            r.train_loss,
            r.train_accuracy,
            r.val_loss,
            r.val_nll,
            r.val_accuracy,
            r.val_ece,
            r.seconds,
            r.train_images_per_sec,
            r.is_best,
            r.skipped_steps
        ));
    }
    decal_core::write_atomic(&run_dir.join(files::METRICS_JSONL), jsonl.as_bytes())?;
    decal_core::write_atomic(&run_dir.join(files::METRICS_CSV), csv.as_bytes())?;
    Ok(())
}

/// Saves the `best/` checkpoint (a `decal_models` checkpoint directory plus `meta.json`), atomically.
pub(super) fn save_best(
    run_dir: &Path,
    vs: &VarStore,
    arch: &ArchConfig,
    meta: &BestMeta,
) -> Result<(), Stage1Error> {
    checkpoint::replace_dir_atomically(run_dir, files::BEST, |dir| {
        std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        save_classifier(dir, vs, arch, meta)
    })?;
    Ok(())
}

/// Writes the `best/` classifier checkpoint into `dir`. The caller makes the directory appear atomically
/// ([`crate::checkpoint::replace_dir_atomically`]).
pub fn save_classifier(
    dir: &Path,
    vs: &VarStore,
    arch: &ArchConfig,
    meta: &BestMeta,
) -> Result<(), CheckpointError> {
    let mut m = CheckpointMeta::new(arch.clone(), "stage1");
    m.dataset = Some(meta.dataset.clone());
    m.normalization = Some(Normalization {
        mean: meta.mean.iter().map(|&v| v as f64).collect(),
        std: meta.std.iter().map(|&v| v as f64).collect(),
    });
    m.seed = Some(meta.seed);
    m.epoch = Some(meta.epoch as u64);
    m.selection = Some(mcheckpoint::Selection {
        criterion: match meta.selection {
            Selection::ValNll => "valid_nll".into(),
            Selection::ValLoss => "valid_loss".into(),
            Selection::Last => "last_epoch_valid_nll".into(),
        },
        value: meta.value,
    });
    m.extra
        .insert("run".into(), serde_json::Value::String(meta.run.clone()));
    m.extra
        .insert("loss".into(), serde_json::Value::String(meta.loss.clone()));
    mcheckpoint::save(dir, vs, &m).map_err(|e| CheckpointError::Invalid {
        path: dir.to_path_buf(),
        problem: e.to_string(),
    })?;
    Ok(())
}
