//! The data units of an experiment on feature files (`[backbone] features = { … }` in `decal run`, and
//! `decal heads`): features saved from any model stand in for the backbone, the split and the extraction.
//!
//! - `features-file` ([`FeaturesFileSpec`], units `features/<set>` and `logits/<set>`): one given matrix
//!   (a split's or an OOD set's features, or the model's own logits of it) with its labels, checked
//!   (finite values, rows = labels, labels in `[0, K)`, logits K wide) and copied into the unit's directory
//!   in `decal_train::features`' cache format — the format of the image path's `features` units, so every
//!   consumer ([`super::load_features`]) reads both alike.
//! - `views-file` ([`ViewsFileSpec`], unit `views`): the given augmented training views (`train_views`: a
//!   stack `[A, N, F]`, a folder of per-view `[N, F]` `.npy` files, or a decal view cache), checked against
//!   the training features and copied into the unit's directory; [`super::load_views`] gives them as
//!   [`TrainViews`].
//!
//! Every given file is fingerprinted (SHA-256 of its bytes; of every file, for a folder) at plan time, so
//! a changed file changes the unit's id and recomputes it and everything downstream; the unit checks the
//! fingerprint again after reading, so a file replaced between planning and running is refused, never
//! silently used. The whole set of files is also loaded and cross-checked once at plan time
//! ([`crate::feature_files::load`]: widths, class count, logits shapes), so a bad file fails before any work,
//! naming the config key and the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use decal_io::npy::{self, NpyArray, NpyData};
use decal_train::features::{self, FeatureSet};
use decal_train::stage2_batched::BatchedSource;
use decal_train::views::{ViewCache, VIEWS_JSON};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{config_error, deps, extract::FEATURES_NAME};
use crate::experiment::ExperimentConfig;
use crate::feature_files::{self as ff, FeatureFiles};
use crate::plan::build::PlanCtx;
use crate::plan::{PlanError, Resource, Unit};
use crate::units::{UnitContext, UnitError, UnitResult, UnitSpec};

/// The checks of [`ExperimentConfig::validate`] for a features backbone.
pub(crate) fn validate_config(config: &ExperimentConfig) -> Result<(), String> {
    let files = config
        .backbone
        .features
        .as_ref()
        .expect("called for a features backbone");
    if config.backbone.checkpoint.is_some() || config.backbone.train.is_some() {
        return Err(
            "[backbone] `features` cannot be combined with `checkpoint` or `[backbone.train]`; give one"
                .into(),
        );
    }
    if !config.data.dataset.is_empty() {
        return Err(
            "[data] is not used with [backbone] features (the feature files are the data); remove it"
                .into(),
        );
    }
    // `[features]` describes images through the network; with feature files the training distribution is
    // the files': augmented exactly when `train_views` is given. Only the per-epoch image loop is refused.
    if config.features.mode == "exact" {
        return Err(
            "[features] mode = \"exact\" runs images through the network; with [backbone] features give augmented training views as features.train_views".into(),
        );
    }
    if !config.ood.is_empty() {
        return Err(
            "[[ood]] sets are images; with [backbone] features give OOD features as features.ood = { name = \"O.npy\" }".into(),
        );
    }
    if config.shift.is_some() {
        return Err("[shift] evaluates corrupted images; it needs a network, not [backbone] features (give corrupted-image features as OOD or test files instead)".into());
    }
    if config.temperature_scaling && files.val_logits.is_none() {
        return Err(
            "temperature_scaling = true (the baseline's TS rows) needs features.val_logits".into(),
        );
    }
    if !config.calibrators.is_empty() && files.val_logits.is_none() {
        return Err(
            "calibrators (post-hoc calibrators of the baseline) need features.val_logits to fit on and features.test_logits to evaluate".into(),
        );
    }
    if files.val_logits.is_some() && files.test_logits.is_none() {
        return Err("features.val_logits is given without features.test_logits: the baseline is evaluated on test_logits".into());
    }
    Ok(())
}

/// A file named in `[backbone] features` (a path, optionally `F.npz:member` / `F.safetensors:name`, or a
/// folder) and the SHA-256 of its bytes at plan time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GivenFile {
    /// As given (relative paths already made relative to the config's folder).
    pub path: PathBuf,
    /// SHA-256 of the file (the container of a member), or of a folder's files (sorted names and hashes).
    pub sha256: String,
}

impl GivenFile {
    /// Fingerprints `path` (config key `key`, for errors).
    pub fn new(path: &Path, key: &str) -> Result<Self, PlanError> {
        Ok(GivenFile {
            path: path.to_path_buf(),
            sha256: fingerprint(path).map_err(config_error(key))?,
        })
    }

    /// Refuses a file whose bytes are no longer the planned ones.
    fn verify(&self, unit: &Unit) -> Result<(), UnitError> {
        let now = fingerprint(&self.path).map_err(|problem| UnitError::Input {
            unit: unit.name.clone(),
            problem,
        })?;
        if now == self.sha256 {
            return Ok(());
        }
        Err(UnitError::Input {
            unit: unit.name.clone(),
            problem: format!(
                "{} changed after the experiment was planned (SHA-256 {} at plan time, {} now); run \
                 `decal run` again to plan it with the new file",
                self.path.display(),
                short(&self.sha256),
                short(&now)
            ),
        })
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// SHA-256 of a file (a member's container), or over the sorted names and SHA-256s of a folder's files.
fn fingerprint(path: &Path) -> Result<String, String> {
    let (plain, _) = ff::split_member(path);
    if plain.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&plain)
            .map_err(|e| format!("{}: {e}", plain.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let mut text = String::new();
        for f in files {
            let h = super::fingerprint::sha256_cached(&f)?;
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            text.push_str(&format!("{name}\t{h}\n"));
        }
        return Ok(decal_core::sha256_bytes(text.as_bytes()));
    }
    super::fingerprint::sha256_cached(&plain)
}

/// What a `features-file` unit holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileContent {
    /// Features `[N, F]`.
    Features,
    /// The model's own logits `[N, K]` (the baseline rows predict with them as they are).
    Logits,
}

/// One given matrix of one set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesFileSpec {
    /// The set: `train`, `val`, `test`, `ood:<name>`.
    pub set: String,
    /// Features or logits.
    pub content: FileContent,
    /// The matrix.
    pub values: GivenFile,
    /// The labels (None for an OOD set: its labels are zeros, unused).
    pub labels: Option<GivenFile>,
    /// K (the labels must lie in `[0, K)`; logits must be K wide).
    pub num_classes: usize,
}

impl FeaturesFileSpec {
    /// `test features`, `val logits`, `OOD features "svhn"`, … (error messages).
    fn what(&self) -> String {
        let content = match self.content {
            FileContent::Features => "features",
            FileContent::Logits => "logits",
        };
        match self.set.strip_prefix("ood:") {
            Some(name) => format!("OOD {content} {name:?}"),
            None => format!("{} {content}", self.set),
        }
    }
}

/// The given augmented views of the training features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewsFileSpec {
    /// `features.train_views`.
    pub source: GivenFile,
}

/// Augmented training views as the head units train on them.
#[derive(Debug)]
pub enum TrainViews {
    /// A decal view cache (the image path's `views` unit, or a given cache).
    Cache(Box<ViewCache>),
    /// Given views, in memory: view `a` is `[N, F]` with the training labels.
    Stack(Vec<FeatureSet>),
}

impl TrainViews {
    /// The batched trainer's source over these views.
    pub fn source(&self) -> BatchedSource<'_> {
        match self {
            TrainViews::Cache(c) => BatchedSource::Views(c.as_ref()),
            TrainViews::Stack(v) => BatchedSource::Stack(v),
        }
    }

    /// A, views per training row.
    pub fn count(&self) -> usize {
        match self {
            TrainViews::Cache(c) => c.num_views(),
            TrainViews::Stack(v) => v.len(),
        }
    }
}

/// The sets of a [`FeatureFiles`]: (set key, unit-name suffix, features, labels, logits, config key).
type SetFiles<'a> = (
    String,
    String,
    &'a Path,
    Option<&'a Path>,
    Option<&'a Path>,
    String,
);

fn set_files(files: &FeatureFiles) -> Vec<SetFiles<'_>> {
    let mut out: Vec<SetFiles<'_>> = [
        (
            "train",
            &files.train,
            &files.train_labels,
            &files.train_logits,
        ),
        ("val", &files.val, &files.val_labels, &files.val_logits),
        ("test", &files.test, &files.test_labels, &files.test_logits),
    ]
    .into_iter()
    .map(|(set, f, l, z)| {
        (
            set.to_string(),
            set.to_string(),
            f.as_path(),
            Some(l.as_path()),
            z.as_deref(),
            format!("backbone.features.{set}"),
        )
    })
    .collect();
    for (name, path) in &files.ood {
        out.push((
            format!("ood:{name}"),
            format!("ood-{}", decal_report::slug(name)),
            path.as_path(),
            None,
            files.ood_logits.get(name).map(PathBuf::as_path),
            format!("backbone.features.ood.{name}"),
        ));
    }
    out
}

/// OOD set names must differ as slugs (unit names) and must not be the pooled records' name.
fn check_ood_names(files: &FeatureFiles) -> Result<(), PlanError> {
    let mut seen: BTreeMap<String, &String> = BTreeMap::new();
    for name in files.ood.keys() {
        let slug = decal_report::slug(name);
        let key = format!("backbone.features.ood.{name}");
        if slug == crate::units::scores::POOLED {
            return Err(PlanError::Config {
                key,
                problem: format!(
                    "{name:?} is reserved: the records of every OOD set pooled carry that name"
                ),
            });
        }
        if let Some(other) = seen.insert(slug, name) {
            return Err(PlanError::Config {
                key,
                problem: format!(
                    "{name:?} names the same OOD set as {other:?} (names must differ in letters or digits)"
                ),
            });
        }
    }
    Ok(())
}

/// Plans the data units of an experiment on feature files: `features/<set>` (and `logits/<set>` where
/// the model's logits are given) per split and OOD set, and `views` for `train_views`; sets
/// [`PlanCtx::features`], [`PlanCtx::logits`], [`PlanCtx::views`], the widths, the OOD set names and the
/// dataset name.
pub(super) fn plan(ctx: &mut PlanCtx<'_>, files: &FeatureFiles) -> Result<(), PlanError> {
    check_ood_names(files)?;
    // Every file read and cross-checked before any work (widths, K, logits shapes, values, labels).
    let loaded = ff::load(files).map_err(config_error("backbone.features"))?;
    let num_classes = loaded.num_classes;
    for (set, suffix, values, labels, logits, key) in set_files(files) {
        let labels = match labels {
            Some(l) => Some(GivenFile::new(l, &format!("{key}_labels"))?),
            None => None,
        };
        let spec = FeaturesFileSpec {
            set: set.clone(),
            content: FileContent::Features,
            values: GivenFile::new(values, &key)?,
            labels: labels.clone(),
            num_classes,
        };
        let id = ctx.plan.add(
            format!("features/{suffix}"),
            UnitSpec::FeaturesFile(spec),
            BTreeMap::new(),
            Resource::Cpu,
        )?;
        ctx.features.insert(set.clone(), id);
        if let Some(z) = logits {
            let spec = FeaturesFileSpec {
                set: set.clone(),
                content: FileContent::Logits,
                values: GivenFile::new(z, &format!("{key}_logits"))?,
                labels,
                num_classes,
            };
            let id = ctx.plan.add(
                format!("logits/{suffix}"),
                UnitSpec::FeaturesFile(spec),
                BTreeMap::new(),
                Resource::Cpu,
            )?;
            ctx.logits.insert(set, id);
        }
    }
    // Every fit (head checkpoint selection, temperatures) is made on the given validation set.
    let val = ctx.features["val"].clone();
    ctx.features.insert("fit".into(), val);
    if let Some(val) = ctx.logits.get("val").cloned() {
        ctx.logits.insert("fit".into(), val);
    }
    if let Some(path) = &files.train_views {
        let train = &loaded.train.features;
        check_views_shape(path, train.len(), train.feature_dim)
            .map_err(config_error("backbone.features.train_views"))?;
        let spec = ViewsFileSpec {
            source: GivenFile::new(path, "backbone.features.train_views")?,
        };
        let train = ctx.features["train"].clone();
        ctx.views = Some(ctx.plan.add(
            "views",
            UnitSpec::ViewsFile(spec),
            deps(&[("train", &train)]),
            Resource::Cpu,
        )?);
    }
    ctx.feature_dim = loaded.feature_dim as i64;
    ctx.num_classes = num_classes as i64;
    ctx.ood_sets = files.ood.keys().cloned().collect();
    ctx.dataset = files.dataset.clone();
    Ok(())
}

/// The plan-time check of the given views' shape, from headers only (a `.npy` stack, a folder of `.npy`
/// views, a decal view cache's `views.json`); members of `.npz` / `.safetensors` files are checked when
/// the unit reads them.
fn check_views_shape(spec: &Path, n: usize, f: usize) -> Result<(), String> {
    let what = format!("train_views {}", spec.display());
    let (plain, member) = ff::split_member(spec);
    if plain.is_dir() && plain.join(VIEWS_JSON).exists() {
        let meta = plain.join(VIEWS_JSON);
        let text =
            std::fs::read_to_string(&meta).map_err(|e| format!("{}: {e}", meta.display()))?;
        let meta: decal_train::views::ViewsMeta =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", meta.display()))?;
        if (meta.num_examples, meta.feature_dim) != (n, f) {
            return Err(format!(
                "{what}: views of {} rows × {} features, but the training features are {n} × {f}",
                meta.num_examples, meta.feature_dim
            ));
        }
        return Ok(());
    }
    if plain.is_dir() {
        let mut any = false;
        for entry in std::fs::read_dir(&plain).map_err(|e| format!("{what}: {e}"))? {
            let p = entry.map_err(|e| format!("{what}: {e}"))?.path();
            if p.extension().is_some_and(|e| e == "npy") {
                any = true;
                let shape = npy::read_header(&p).map_err(|e| e.to_string())?.shape;
                if shape != [n, f] {
                    return Err(format!(
                        "train view {}: shape {shape:?}, but the training features are [{n}, {f}]",
                        p.display()
                    ));
                }
            }
        }
        if !any {
            return Err(format!("{what}: no .npy files in the folder"));
        }
        return Ok(());
    }
    if member.is_none() && plain.extension().is_some_and(|e| e == "npy") {
        let shape = npy::read_header(&plain)
            .map_err(|e| format!("{what}: {e}"))?
            .shape;
        if shape.len() != 3 || shape[1..] != [n, f] || shape[0] == 0 {
            return Err(format!(
                "{what}: shape {shape:?}, expected [A, {n}, {f}] (A views of the {n} × {f} training features)"
            ));
        }
    }
    Ok(())
}

fn input(unit: &Unit) -> impl Fn(String) -> UnitError + '_ {
    move |problem| UnitError::Input {
        unit: unit.name.clone(),
        problem,
    }
}

/// Runs a `features-file` unit: reads and checks the matrix and its labels, stores them as a feature set.
pub fn run_features_file(
    s: &FeaturesFileSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let started = Instant::now();
    let what = s.what();
    let (values, rows, cols) = ff::read_matrix(&s.values.path, &what).map_err(input(unit))?;
    let labels = match &s.labels {
        Some(l) => {
            let y = ff::read_labels(&l.path, &format!("{} labels", s.set)).map_err(input(unit))?;
            if y.len() != rows {
                return Err(input(unit)(format!(
                    "{} labels {}: {} labels, but the {what} {} has {rows} rows",
                    s.set,
                    l.path.display(),
                    y.len(),
                    s.values.path.display()
                )));
            }
            decal_io::matrix::check_labels(&y, s.num_classes, &l.path)
                .map_err(|e| input(unit)(format!("{} labels: {e}", s.set)))?;
            l.verify(unit)?;
            y
        }
        None => vec![0; rows],
    };
    if s.content == FileContent::Logits && cols != s.num_classes {
        return Err(input(unit)(format!(
            "{what} {}: shape [{rows}, {cols}], expected [{rows}, {}] (one column per class)",
            s.values.path.display(),
            s.num_classes
        )));
    }
    s.values.verify(unit)?;
    let key = ff::content_key(
        &values,
        s.labels.is_some().then_some(labels.as_slice()),
        &format!("{what}: {}", s.values.path.display()),
    );
    let set = FeatureSet {
        features: values,
        labels,
        feature_dim: cols,
    };
    features::save(dir, FEATURES_NAME, &set, &key).map_err(UnitError::failed(
        unit,
        format!("storing the {what} in {}", dir.display()),
    ))?;
    (ctx.log)(&format!(
        "{what}: {rows} × {cols} from {} [{:.1}s]",
        s.values.path.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(UnitResult::done(json!({
        "set": s.set, "content": s.content, "examples": rows, "width": cols, "data_hash": key.data_hash,
    })))
}

/// File of the given views stored by a `views-file` unit (`[A, N, F]` float32) when they are not a decal
/// view cache (which is copied into [`super::extract::VIEWS_DIR`]).
pub const STACK_FILE: &str = "views.npy";

/// Runs a `views-file` unit: reads the given views, checks them against the training features (input
/// `train`) and stores them.
pub fn run_views_file(
    s: &ViewsFileSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let started = Instant::now();
    let train = super::load_features(ctx, unit.dep("train")?)?;
    let spec = &s.source.path;
    let (plain, _) = ff::split_member(spec);
    let count = if plain.is_dir() && plain.join(VIEWS_JSON).exists() {
        let to = dir.join(super::extract::VIEWS_DIR);
        std::fs::create_dir_all(&to).map_err(UnitError::failed(unit, to.display().to_string()))?;
        for entry in std::fs::read_dir(&plain)
            .map_err(UnitError::failed(unit, plain.display().to_string()))?
        {
            let from = entry
                .map_err(UnitError::failed(unit, plain.display().to_string()))?
                .path();
            if from.is_file() {
                let target = to.join(from.file_name().unwrap_or_default());
                std::fs::copy(&from, &target).map_err(UnitError::failed(
                    unit,
                    format!("copying {}", from.display()),
                ))?;
            }
        }
        let cache = ViewCache::open(&to)
            .map_err(|e| input(unit)(format!("train_views {}: {e}", spec.display())))?;
        check_cache(&cache, &train, spec).map_err(input(unit))?;
        cache.num_views()
    } else {
        let views = read_stack(spec, &train).map_err(input(unit))?;
        let (n, f) = (train.len(), train.feature_dim);
        let mut all = Vec::with_capacity(views.len() * n * f);
        for v in &views {
            all.extend_from_slice(v);
        }
        let path = dir.join(STACK_FILE);
        npy::write(&path, &NpyArray::from_f32(vec![views.len(), n, f], all)).map_err(
            UnitError::failed(unit, format!("writing {}", path.display())),
        )?;
        views.len()
    };
    s.source.verify(unit)?;
    (ctx.log)(&format!(
        "{count} augmented training views of {} × {} features from {} [{:.1}s]",
        train.len(),
        train.feature_dim,
        spec.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(UnitResult::done(json!({
        "views": count, "examples": train.len(), "feature_dim": train.feature_dim,
        "sha256": s.source.sha256,
    })))
}

/// Reads what a `views-file` unit stored in `dir`.
pub(super) fn open_stored(dir: &Path, train_labels: Option<&[i64]>) -> Result<TrainViews, String> {
    let cache_dir = dir.join(super::extract::VIEWS_DIR);
    if cache_dir.join(VIEWS_JSON).exists() {
        return ViewCache::open(&cache_dir)
            .map(|c| TrainViews::Cache(Box::new(c)))
            .map_err(|e| e.to_string());
    }
    let path = dir.join(STACK_FILE);
    let array = npy::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (a, n, f) = match array.shape[..] {
        [a, n, f] => (a, n, f),
        _ => {
            return Err(format!(
                "{}: shape {:?}, expected [A, N, F]",
                path.display(),
                array.shape
            ))
        }
    };
    let NpyData::F32(values) = array.data else {
        return Err(format!("{}: expected float32 values", path.display()));
    };
    let labels = train_labels
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![0; n]);
    if labels.len() != n {
        return Err(format!(
            "{}: {n} rows per view, {} training labels",
            path.display(),
            labels.len()
        ));
    }
    Ok(TrainViews::Stack(
        (0..a)
            .map(|v| FeatureSet {
                features: values[v * n * f..(v + 1) * n * f].to_vec(),
                labels: labels.clone(),
                feature_dim: f,
            })
            .collect(),
    ))
}

fn check_cache(cache: &ViewCache, train: &FeatureSet, spec: &Path) -> Result<(), String> {
    let what = format!("train_views {}", spec.display());
    let (n, f) = (train.len(), train.feature_dim);
    if cache.len() != n || cache.feature_dim() != f {
        return Err(format!(
            "{what}: {} views of {} rows × {} features, but the training features are {n} × {f}",
            cache.num_views(),
            cache.len(),
            cache.feature_dim()
        ));
    }
    if cache.labels() != train.labels.as_slice() {
        return Err(format!(
            "{what}: its labels differ from the training labels (row r of every view must augment training row r)"
        ));
    }
    Ok(())
}

/// Reads a stack `[A, N, F]` or a folder of per-view `[N, F]` `.npy` files (sorted by name), each view
/// the training features' shape.
fn read_stack(spec: &Path, train: &FeatureSet) -> Result<Vec<Vec<f32>>, String> {
    let what = format!("train_views {}", spec.display());
    let (n, f) = (train.len(), train.feature_dim);
    let (plain, _) = ff::split_member(spec);
    if plain.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&plain)
            .map_err(|e| format!("{what}: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "npy"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("{what}: no .npy files in the folder"));
        }
        let mut views = Vec::new();
        for p in files {
            let (v, rows, cols) = ff::read_matrix(&p, "train view")?;
            if (rows, cols) != (n, f) {
                return Err(format!(
                    "train view {}: shape [{rows}, {cols}], but the training features are [{n}, {f}]",
                    p.display()
                ));
            }
            views.push(v);
        }
        return Ok(views);
    }
    let array = ff::read_array(spec).map_err(|e| format!("{what}: {e}"))?;
    if array.shape.len() != 3 || array.shape[1..] != [n, f] || array.shape[0] == 0 {
        return Err(format!(
            "{what}: shape {:?}, expected [A, {n}, {f}] (A views of the {n} × {f} training features)",
            array.shape
        ));
    }
    let values: Vec<f32> = match array.data {
        NpyData::F32(v) => v,
        NpyData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        other => {
            return Err(format!(
                "{what}: expected floating-point values, got dtype {}",
                other.dtype().code()
            ))
        }
    };
    if let Some(pos) = values.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "{what}: view {}, row {}, column {} is {} (values must be finite)",
            pos / (n * f),
            pos / f % n,
            pos % f,
            values[pos]
        ));
    }
    Ok(values.chunks(n * f).map(<[f32]>::to_vec).collect())
}
