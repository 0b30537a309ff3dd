//! The epoch journal of an `exact-epochs` unit (super::epochs): what the body passes of one stage-2 seed in
//! `[features] mode = "exact"` produced for each finished epoch — the epoch's training features (the freshly
//! augmented images through the body), its validation features when they change per epoch, and with
//! `seed-bn-drift` the body's BatchNorm statistics after the epoch. It is the unit's output (every exact head
//! of the seed trains on it) and its resume point: a unit interrupted anywhere resumes at the first epoch it
//! has not journaled, and the heads train **the same, bit for bit**, as after an uninterrupted run (features
//! read back are the float32 values that were written).
//!
//! The expensive part of an exact head is the body passes (40 epochs × every training image: about two
//! hours of a 2-core CPU for a WRN-16-4); the head's own optimisation over the journaled features takes
//! a fraction of a second per epoch.
//!
//! Layout, inside the unit's directory: `epochs/epoch-NNN/` (0-based `NNN`) with `train.{features,labels}.npy`
//! and `train.json`, optionally `val.*`, optionally [`BODY_STATE_FILE`], and `epoch.json` written last
//! (atomically): an epoch counts as journaled only when its `epoch.json` exists, names this unit and
//! backbone, and every file it lists passes its SHA-256 check. An epoch that fails any check is reported
//! (file and problem); the unit removes and recomputes it (nothing is lost but its time), a head reading it
//! stops and says which unit to remove. ≈ 41 MB per epoch for 40,000 WRN-16-4 features.

use std::path::{Path, PathBuf};

use decal_core::{sha256_file, write_json_atomic};
use decal_train::features::{self, BodyMode, CacheKey, FeatureSet};
use serde::{Deserialize, Serialize};

use crate::drift::{BodyState, BODY_STATE_FILE};

/// The journal's directory inside an `exact-epochs` unit's directory.
pub const JOURNAL_DIR: &str = "epochs";
/// The file that completes a journaled epoch.
const EPOCH_FILE: &str = "epoch.json";

/// `epoch.json`: what one journaled epoch holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EpochRecord {
    /// The `exact-epochs` unit's id.
    unit: String,
    /// SHA-256 of the backbone checkpoint the body passes ran with.
    backbone: String,
    /// 0-based epoch.
    epoch: usize,
    /// Training examples.
    train: usize,
    /// Validation examples, when the epoch has its own validation features.
    val: Option<usize>,
    /// SHA-256 of the body state file, with `seed-bn-drift`.
    body_state_sha256: Option<String>,
}

/// One journaled epoch, read back.
pub struct JournaledEpoch {
    /// The epoch's training features, in batch order.
    pub train: FeatureSet,
    /// The epoch's own validation features, if it had them.
    pub val: Option<FeatureSet>,
    /// The body's BatchNorm statistics after the epoch (`seed-bn-drift`).
    pub body: Option<BodyState>,
}

/// The journal of one `exact-epochs` unit.
pub struct Journal {
    dir: PathBuf,
    unit: String,
    /// SHA-256 of the backbone (None: a reader that checks the unit id only, which hashes the backbone's).
    backbone: Option<String>,
    body_mode: BodyMode,
}

impl Journal {
    /// The journal in `unit_dir` of unit `unit`, whose body passes run the backbone with SHA-256 `backbone`.
    pub fn new(unit_dir: &Path, unit: &str, backbone: &str, body_mode: BodyMode) -> Journal {
        Journal {
            dir: unit_dir.join(JOURNAL_DIR),
            unit: unit.to_string(),
            backbone: Some(backbone.to_string()),
            body_mode,
        }
    }

    /// The journal of the finished unit `unit` in `unit_dir`, to read (a head's input).
    pub fn reader(unit_dir: &Path, unit: &str, body_mode: BodyMode) -> Journal {
        Journal {
            dir: unit_dir.join(JOURNAL_DIR),
            unit: unit.to_string(),
            backbone: None,
            body_mode,
        }
    }

    /// The directory of `epoch`.
    pub fn epoch_dir(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("epoch-{epoch:03}"))
    }

    /// Whether `epoch` has an `epoch.json` (its contents are checked when read).
    pub fn has(&self, epoch: usize) -> bool {
        self.epoch_dir(epoch).join(EPOCH_FILE).exists()
    }

    /// Reads `epoch`: `Ok(None)` when it was never journaled, `Err(problem)` (naming the file) when its files
    /// are unusable. `reference` is the undrifted body state (for the names and shapes of a drifted one;
    /// None: an epoch with a body state is an error).
    pub fn read(
        &self,
        epoch: usize,
        reference: Option<&BodyState>,
    ) -> Result<Option<JournaledEpoch>, String> {
        let dir = self.epoch_dir(epoch);
        let record_path = dir.join(EPOCH_FILE);
        if !record_path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&record_path)
            .map_err(|e| format!("{}: {e}", record_path.display()))?;
        let record: EpochRecord = serde_json::from_str(&text)
            .map_err(|e| format!("{}: invalid JSON: {e}", record_path.display()))?;
        let backbone = self.backbone.as_deref().unwrap_or(&record.backbone);
        if record.unit != self.unit || record.backbone != backbone || record.epoch != epoch {
            return Err(format!(
                "{}: written for unit {} epoch {} with backbone {}, not unit {} epoch {} with backbone {}",
                record_path.display(),
                record.unit,
                record.epoch + 1,
                short(&record.backbone),
                self.unit,
                epoch + 1,
                short(backbone)
            ));
        }
        let load = |name: &str, n: usize| -> Result<FeatureSet, String> {
            let (set, meta) = features::load(&dir, name).map_err(|e| e.to_string())?;
            if set.len() != n || meta.key.body_mode != self.body_mode {
                return Err(format!(
                    "{}: {} examples ({:?}), {} says {n} ({:?})",
                    dir.join(format!("{name}.json")).display(),
                    set.len(),
                    meta.key.body_mode,
                    record_path.display(),
                    self.body_mode
                ));
            }
            Ok(set)
        };
        let train = load("train", record.train)?;
        let val = record.val.map(|n| load("val", n)).transpose()?;
        let body = match &record.body_state_sha256 {
            Some(expected) => {
                let path = dir.join(BODY_STATE_FILE);
                let actual = sha256_file(&path).map_err(|e| e.to_string())?;
                if &actual != expected {
                    return Err(format!(
                        "{}: SHA-256 {actual} differs from {expected} recorded in {}",
                        path.display(),
                        record_path.display()
                    ));
                }
                let reference = reference.ok_or_else(|| {
                    format!("{}: a body state where none was expected", path.display())
                })?;
                Some(BodyState::load(&path, reference).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        Ok(Some(JournaledEpoch { train, val, body }))
    }

    /// Journals `epoch` (features first, `epoch.json` last, each atomically).
    pub fn write(
        &self,
        epoch: usize,
        train: &FeatureSet,
        val: Option<&FeatureSet>,
        body: Option<&BodyState>,
    ) -> Result<(), String> {
        let backbone = self
            .backbone
            .clone()
            .ok_or_else(|| format!("{}: a read-only journal", self.dir.display()))?;
        // Whatever an interrupted write left goes first.
        self.discard(epoch)?;
        let dir = self.epoch_dir(epoch);
        let key = |part: &str| CacheKey {
            backbone_hash: backbone.clone(),
            data_hash: format!(
                "exact-mode epoch {} {part} of unit {}",
                epoch + 1,
                self.unit
            ),
            transform: "freshly augmented (exact mode)".into(),
            body_mode: self.body_mode,
        };
        features::save(&dir, "train", train, &key("train")).map_err(|e| e.to_string())?;
        if let Some(v) = val {
            features::save(&dir, "val", v, &key("val")).map_err(|e| e.to_string())?;
        }
        let body_state_sha256 = match body {
            Some(state) => {
                let path = dir.join(BODY_STATE_FILE);
                state.save(&path).map_err(|e| e.to_string())?;
                Some(sha256_file(&path).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        let record = EpochRecord {
            unit: self.unit.clone(),
            backbone: backbone.clone(),
            epoch,
            train: train.len(),
            val: val.map(FeatureSet::len),
            body_state_sha256,
        };
        write_json_atomic(&dir.join(EPOCH_FILE), &record).map_err(|e| e.to_string())
    }

    /// Removes one epoch (an unusable one, before it is recomputed).
    pub fn discard(&self, epoch: usize) -> Result<(), String> {
        let dir = self.epoch_dir(epoch);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(())
    }
}

/// The first 12 hex digits of a hash, for messages.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
