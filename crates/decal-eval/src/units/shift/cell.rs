//! Running a `shift-cell` unit: one corruption × severity through the frozen (or a head's drifted) body.

use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use decal_data::corrupted::{CorruptionDir, CorruptionPixels};
use decal_train::features::{self, BodyMode, CacheKey, FeatureSet};
use decal_train::stage1::DeviceImages;
use serde_json::json;

use super::{CellInfo, ShiftCellSpec};
use crate::drift::{BodyState, BODY_STATE_FILE};
use crate::plan::Unit;
use crate::units::data::{load_backbone, load_split, Backbone, SplitInfo};
use crate::units::{UnitContext, UnitError, UnitResult};

/// Name of the feature files in a cell unit's directory (`cell.features.npy`, `cell.labels.npy`,
/// `cell.json`).
pub(crate) const CELL_NAME: &str = "cell";

fn input(unit: &Unit, problem: impl Into<String>) -> UnitError {
    UnitError::Input {
        unit: unit.name.clone(),
        problem: problem.into(),
    }
}

/// The corruption file's pixels, checked against the spec's SHA-256 (one file cached per process: the
/// cells of a corruption run one after the other).
fn pixels(
    s: &ShiftCellSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    d: &CorruptionDir,
    geometry: (usize, usize, usize),
) -> Result<Rc<(String, CorruptionPixels)>, UnitError> {
    let load = || {
        let sha = super::file_sha256(&s.file).map_err(|p| input(unit, p))?;
        if sha != s.sha256 {
            return Err(input(
                unit,
                format!(
                    "{} changed since the plan (SHA-256 {}, planned {}); plan again",
                    s.file.display(),
                    &sha[..12],
                    &s.sha256[..s.sha256.len().min(12)]
                ),
            ));
        }
        let p = d
            .read_pixels(&s.corruption, geometry)
            .map_err(UnitError::failed(unit, "reading the corruption"))?;
        Ok((s.sha256.clone(), p))
    };
    let cached = ctx.resources.cached("shift-pixels", load)?;
    if cached.0 == s.sha256 {
        return Ok(cached);
    }
    ctx.resources.forget("shift-pixels");
    ctx.resources.cached("shift-pixels", load)
}

/// The rows of severity block `si` the cell keeps, whether the held-out calibration images were left out,
/// and why not.
fn rows(
    s: &ShiftCellSpec,
    per: usize,
    split: &SplitInfo,
) -> (Vec<usize>, usize, bool, Option<String>) {
    let every = match s.limit {
        0 => s.every.max(1),
        n => s.every.max(per.div_ceil(n)).max(1),
    };
    let held_out = &split.calibration_original;
    let mut excluded = vec![false; per];
    let exclude = !held_out.is_empty() && per == split.full_test_len;
    if exclude {
        for &i in held_out {
            excluded[i] = true;
        }
    }
    let warning = (!held_out.is_empty() && !exclude).then(|| {
        format!(
            "shift: {} has {per} images per severity, not the test split's {}: the corrupted versions of the {} held-out calibration images could not be left out",
            s.file.display(),
            split.full_test_len,
            held_out.len()
        )
    });
    let picked = (0..per).step_by(every).filter(|&r| !excluded[r]).collect();
    (picked, every, exclude, warning)
}

/// The cell's features through the frozen body, or (`drifted`) through the BatchNorm statistics its
/// `body` input saved — the shared backbone is back to its frozen state afterwards, error or not — and the
/// hash the features' cache key records for that body.
fn extract(
    s: &ShiftCellSpec,
    unit: &Unit,
    ctx: &UnitContext<'_>,
    backbone: &Backbone,
    images: &DeviceImages,
    idx: &[usize],
) -> Result<(FeatureSet, String), UnitError> {
    let mut backbone_hash = backbone.hash.clone();
    let mut drifted: Option<BodyState> = None;
    if s.drifted {
        let path = ctx.input_dir(unit, "body")?.join(BODY_STATE_FILE);
        let what = format!("the drifted body {}", path.display());
        let state = BodyState::load(&path, &backbone.undrifted)
            .map_err(UnitError::failed(unit, what.clone()))?;
        let hash = BodyState::file_hash(&path).map_err(UnitError::failed(unit, what))?;
        backbone_hash = format!("{backbone_hash}+bn-state:{hash}");
        drifted = Some(state);
    }
    let extracted = (|| {
        if let Some(state) = &drifted {
            state
                .restore(&backbone.vs)
                .map_err(UnitError::failed(unit, "loading the drifted body"))?;
        }
        features::extract(
            backbone.classifier.body.as_ref(),
            images,
            idx,
            s.batch_size,
            BodyMode::Frozen,
            None,
        )
        .map_err(UnitError::failed(unit, "features of the cell"))
    })();
    if drifted.is_some() {
        // The cached backbone is shared by the process's units: always back to the frozen body.
        backbone
            .undrifted
            .restore(&backbone.vs)
            .map_err(UnitError::failed(unit, "restoring the undrifted body"))?;
    }
    let fs = extracted?;
    Ok((fs, backbone_hash))
}

/// Runs a `shift-cell` unit.
pub(super) fn run(
    s: &ShiftCellSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let started = Instant::now();
    let backbone = load_backbone(ctx, unit.dep("backbone")?)?;
    let split = load_split(ctx, unit.dep("split")?)?;
    let cdir = s.file.parent().unwrap_or(Path::new("."));
    let d = CorruptionDir::open(cdir, split.num_classes)
        .map_err(UnitError::failed(unit, "opening the corruption directory"))?;
    let si = d
        .severities
        .iter()
        .position(|&x| x == s.severity)
        .ok_or_else(|| {
            input(
                unit,
                format!(
                    "severity {} is not among {:?} of {}",
                    s.severity,
                    d.severities,
                    cdir.display()
                ),
            )
        })?;
    let [h, w, c] = split.image_shape;
    let px = pixels(s, unit, ctx, &d, (h, w, c))?;
    let per = d.per_severity();
    let (picked, every, excluded, warning) = rows(s, per, &split);
    let class_names: Vec<String> = (0..split.num_classes).map(|k| k.to_string()).collect();
    let cell = d
        .cell(
            &px.1,
            si,
            &picked,
            format!("{}/{}", s.corruption, s.severity),
            &class_names,
        )
        .map_err(UnitError::failed(unit, "cutting the cell"))?;
    let images = DeviceImages::new(&cell, &backbone.mean, &backbone.std, ctx.options.device);
    let idx: Vec<usize> = (0..cell.len()).collect();
    let (fs, backbone_hash) = extract(s, unit, ctx, &backbone, &images, &idx)?;
    let key = CacheKey {
        backbone_hash,
        data_hash: features::images_hash(&cell, &idx),
        transform: backbone.transform(),
        body_mode: BodyMode::Frozen,
    };
    features::save(dir, CELL_NAME, &fs, &key)
        .map_err(UnitError::failed(unit, "writing the features"))?;
    let info = CellInfo {
        corruption: s.corruption.clone(),
        severity: s.severity,
        images: fs.len(),
        per_severity: per,
        every,
        held_out: split.calibration_original.len(),
        held_out_excluded: excluded,
        warning,
    };
    decal_core::write_json_atomic(&dir.join("info.json"), &info)
        .map_err(UnitError::failed(unit, "writing info.json"))?;
    (ctx.log)(&format!(
        "{}: {} images ({:.1}s)",
        unit.name,
        fs.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(UnitResult::done(
        json!({"images": fs.len(), "every": every, "held_out_excluded": excluded}),
    ))
}
