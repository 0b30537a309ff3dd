//! decal checkpoints: a directory with `model.safetensors` (every variable of the VarStore, BatchNorm running
//! statistics included) and `config.json` ([`CheckpointMeta`]: architecture, K, dataset, normalisation,
//! stage, seed, epoch, selection criterion, provenance, and the weights' SHA-256).
//!
//! Invariant: a directory is a valid checkpoint iff `config.json` exists and the weights' SHA-256 matches the
//! one it records. [`save`] removes an old `config.json` first, writes the weights atomically (temp file +
//! fsync + rename), and writes `config.json` last (atomically), so a crash at any point never leaves a
//! directory that loads as a checkpoint with the wrong weights (seed-system.md §16: store an explicit
//! architecture config next to the weights).
//!
//! Tensor names are the seed's PyTorch state_dict keys without the Lightning `model.` prefix; PyTorch's
//! `num_batches_tracked` BatchNorm counters are not stored (libtorch's BatchNorm with a fixed momentum never
//! reads them).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::{
    try_build_backbone, try_build_classifier, ArchConfig, Backbone, Classifier, ModelError,
};

/// File name of the weights inside a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the metadata inside a checkpoint directory; written last.
pub const CONFIG_FILE: &str = "config.json";
/// Version of the `config.json` layout.
pub const FORMAT_VERSION: u32 = 1;

/// Per-channel input normalisation the model was trained with: `x_c ← (x_c − mean_c) / std_c` on [0, 1] pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Channel means.
    pub mean: Vec<f64>,
    /// Channel standard deviations.
    pub std: Vec<f64>,
}

/// How the checkpoint's epoch was selected (seed §8.3: lowest validation loss).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// What was minimised or maximised, e.g. `valid_loss_epoch` or `valid_nll`.
    pub criterion: String,
    /// Its value at the selected epoch.
    pub value: f64,
}

/// Where imported weights came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportSource {
    /// The file as given by the user.
    pub path: String,
    /// SHA-256 of that file.
    pub sha256: String,
    /// `pytorch-zip`, `lightning-ckpt` or `safetensors`.
    pub format: String,
    /// Source tensors that were deliberately not imported (e.g. `num_batches_tracked`, a ViT pooler).
    pub ignored_keys: Vec<String>,
}

/// Written by [`save`]: the weights file and its checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfo {
    /// File name relative to the checkpoint directory.
    pub file: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Number of tensors stored.
    pub num_tensors: usize,
    /// Trainable parameters (PyTorch's `parameters()` count, buffers excluded).
    pub num_parameters: i64,
}

/// Contents of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Layout version of this file ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The architecture; determines every tensor name and shape.
    pub arch: ArchConfig,
    /// K (duplicated from `arch` for readers that do not parse the architecture).
    pub num_classes: i64,
    /// Training dataset, e.g. `cifar10`.
    pub dataset: Option<String>,
    /// Input normalisation expected by the model.
    pub normalization: Option<Normalization>,
    /// `stage1`, `stage2`, `imported`, …
    pub stage: String,
    /// Training seed.
    pub seed: Option<u64>,
    /// Selected epoch (0-based, as the seed's file names).
    pub epoch: Option<u64>,
    /// Checkpoint-selection criterion and value.
    pub selection: Option<Selection>,
    /// Origin of imported weights.
    pub source: Option<ImportSource>,
    /// Free-form extra fields (e.g. the seed run name), kept verbatim.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Who wrote the checkpoint, when, with which command.
    pub provenance: decal_core::Provenance,
    /// Filled in by [`save`]; ignored when passed to it.
    pub weights: Option<WeightsInfo>,
}

impl CheckpointMeta {
    /// Metadata for `arch` at `stage` with the current process's provenance and everything else unset.
    pub fn new(arch: ArchConfig, stage: impl Into<String>) -> Self {
        CheckpointMeta {
            format_version: FORMAT_VERSION,
            num_classes: arch.num_classes(),
            arch,
            dataset: None,
            normalization: None,
            stage: stage.into(),
            seed: None,
            epoch: None,
            selection: None,
            source: None,
            extra: BTreeMap::new(),
            provenance: decal_core::Provenance::capture(),
            weights: None,
        }
    }
}

/// A loaded checkpoint: the variables, the classifier over them, and the metadata.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    /// Holds every tensor; pass `vs.trainable_variables()` (or a subset) to an optimiser.
    pub vs: nn::VarStore,
    /// The model built over `vs`.
    pub classifier: Classifier,
    /// `config.json`.
    pub meta: CheckpointMeta,
}

/// A loaded checkpoint body only (stage 2: the frozen feature extractor; the head's tensors are skipped).
#[derive(Debug)]
pub struct LoadedBody {
    /// Holds the body's tensors.
    pub vs: nn::VarStore,
    /// The body.
    pub body: Box<dyn Backbone>,
    /// `config.json`.
    pub meta: CheckpointMeta,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `vs` and `meta` as a checkpoint into `dir` (created if needed). Existing checkpoint files in `dir` are
/// replaced; callers decide beforehand whether that is allowed (`decal_core::prepare_output_dir(dir, force)`).
/// Returns the metadata as written (with [`CheckpointMeta::weights`] filled in).
pub fn save(
    dir: &Path,
    vs: &nn::VarStore,
    meta: &CheckpointMeta,
) -> Result<CheckpointMeta, ModelError> {
    meta.arch.validate()?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let config_path = dir.join(CONFIG_FILE);
    // Invalidate first: from here until config.json is rewritten the directory is not a checkpoint.
    match std::fs::remove_file(&config_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&config_path)(e)),
    }
    let weights_path = dir.join(WEIGHTS_FILE);
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.detach().to_device(Device::Cpu).contiguous()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    // The temp name keeps the .safetensors suffix and lives in `dir`, so the rename is atomic.
    let tmp = dir.join(format!(
        ".{WEIGHTS_FILE}.tmp-{}.safetensors",
        std::process::id()
    ));
    let result = (|| {
        Tensor::write_safetensors(&named, &tmp).map_err(|e| ModelError::torch(&tmp, e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &weights_path).map_err(io_err(&weights_path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    let mut written = meta.clone();
    written.format_version = FORMAT_VERSION;
    written.num_classes = meta.arch.num_classes();
    written.weights = Some(WeightsInfo {
        file: WEIGHTS_FILE.to_string(),
        sha256: decal_core::sha256_file(&weights_path)?,
        num_tensors: named.len(),
        num_parameters: crate::num_parameters(vs),
    });
    let text = config_text_with_checksum(&written, &config_path)?;
    decal_core::write_atomic(&config_path, text.as_bytes())?;
    Ok(written)
}

/// The key under which `config.json` records its own SHA-256. The checksum is computed over the file's bytes
/// with the 64 hex digits replaced by zeros, so that damage anywhere in `config.json` (a flipped digit of
/// `num_classes` would otherwise surface as a tensor-shape error in `model.safetensors`) is reported as
/// what it is. Files without the key (written before it existed, or edited on purpose and the key
/// removed) are read unchecked.
pub const CONFIG_CHECKSUM_KEY: &str = "config_sha256";

const ZERO_DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn config_text_with_checksum(meta: &CheckpointMeta, path: &Path) -> Result<String, ModelError> {
    let ser = |e: serde_json::Error| {
        ModelError::Core(decal_core::CoreError::Serialize {
            what: path.display().to_string(),
            source: e,
        })
    };
    let mut value = serde_json::to_value(meta).map_err(ser)?;
    if let serde_json::Value::Object(map) = &mut value {
        map.insert(CONFIG_CHECKSUM_KEY.into(), ZERO_DIGEST.into());
    }
    let mut text = serde_json::to_string_pretty(&value).map_err(ser)?;
    text.push('\n');
    let digest = decal_core::sha256_bytes(text.as_bytes());
    let marker = format!("\"{CONFIG_CHECKSUM_KEY}\": \"{ZERO_DIGEST}\"");
    Ok(text.replacen(
        &marker,
        &format!("\"{CONFIG_CHECKSUM_KEY}\": \"{digest}\""),
        1,
    ))
}

/// Verifies the checksum `config.json` records for itself (see [`CONFIG_CHECKSUM_KEY`]); `Ok` when it
/// matches or is absent.
fn verify_config_checksum(text: &str, path: &Path) -> Result<(), ModelError> {
    let key = format!("\"{CONFIG_CHECKSUM_KEY}\": \"");
    let Some(start) = text.find(&key).map(|i| i + key.len()) else {
        return Ok(());
    };
    let recorded = text.get(start..start + 64).unwrap_or("");
    let mut zeroed = String::with_capacity(text.len());
    zeroed.push_str(&text[..start]);
    zeroed.push_str(ZERO_DIGEST);
    zeroed.push_str(text.get(start + 64..).unwrap_or(""));
    let actual = decal_core::sha256_bytes(zeroed.as_bytes());
    if recorded.len() != 64 || actual != recorded {
        return Err(ModelError::BadCheckpoint {
            path: path.to_path_buf(),
            problem: format!(
                "SHA-256 {actual} does not match the {CONFIG_CHECKSUM_KEY} it records ({recorded}): \
                 config.json was damaged or edited (remove the {CONFIG_CHECKSUM_KEY} line to accept an edit)"
            ),
        });
    }
    Ok(())
}

/// Reads and checks `config.json` of the checkpoint in `dir` (does not touch the weights).
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta, ModelError> {
    let config_path = dir.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&config_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModelError::BadCheckpoint {
                path: dir.to_path_buf(),
                problem: format!("no {CONFIG_FILE}: not a decal checkpoint, or an incomplete one"),
            })
        }
        Err(e) => return Err(io_err(&config_path)(e)),
    };
    // Before parsing: a damaged file is reported as damaged, not as whatever its damage parses into.
    verify_config_checksum(&text, &config_path)?;
    let meta: CheckpointMeta =
        serde_json::from_str(&text).map_err(|e| ModelError::BadCheckpoint {
            path: config_path.clone(),
            problem: format!("invalid checkpoint config: {e}"),
        })?;
    if meta.format_version > FORMAT_VERSION {
        return Err(ModelError::BadCheckpoint {
            path: config_path,
            problem: format!(
                "format_version {} is newer than this decal understands ({FORMAT_VERSION})",
                meta.format_version
            ),
        });
    }
    meta.arch.validate()?;
    Ok(meta)
}

/// Reads the weights of the checkpoint in `dir` after verifying their SHA-256 against `config.json`.
fn read_weights(
    dir: &Path,
    meta: &CheckpointMeta,
) -> Result<(PathBuf, Vec<(String, Tensor)>), ModelError> {
    let info = meta
        .weights
        .as_ref()
        .ok_or_else(|| ModelError::BadCheckpoint {
            path: dir.join(CONFIG_FILE),
            problem: "config.json has no `weights` entry (it was not written by checkpoint::save)"
                .into(),
        })?;
    let path = dir.join(&info.file);
    if !path.is_file() {
        return Err(ModelError::BadCheckpoint {
            path,
            problem: "weights file is missing".into(),
        });
    }
    let sha = decal_core::sha256_file(&path)?;
    if sha != info.sha256 {
        return Err(ModelError::BadCheckpoint {
            path,
            problem: format!(
                "SHA-256 {sha} does not match config.json ({}): weights were modified or replaced",
                info.sha256
            ),
        });
    }
    let tensors = Tensor::read_safetensors(&path).map_err(|e| ModelError::torch(&path, e))?;
    Ok((path, tensors))
}

/// Loads the checkpoint in `dir` onto `device`: builds the classifier from `config.json` and copies every tensor
/// into it (strict: missing or unexpected tensors and shape mismatches are errors naming the tensor).
pub fn load(dir: &Path, device: Device) -> Result<LoadedCheckpoint, ModelError> {
    let meta = read_meta(dir)?;
    let (path, tensors) = read_weights(dir, &meta)?;
    let vs = nn::VarStore::new(device);
    let classifier = try_build_classifier(&vs.root(), &meta.arch)?;
    copy_into(&vs, tensors, &path, |_| false)?;
    Ok(LoadedCheckpoint {
        vs,
        classifier,
        meta,
    })
}

/// Loads only the body of the checkpoint in `dir` (the head's tensors are skipped), e.g. for stage 2.
pub fn load_body(dir: &Path, device: Device) -> Result<LoadedBody, ModelError> {
    let meta = read_meta(dir)?;
    let (path, tensors) = read_weights(dir, &meta)?;
    let vs = nn::VarStore::new(device);
    let body = try_build_backbone(&vs.root(), &meta.arch)?;
    let head_prefix = format!("{}.", meta.arch.head_name());
    copy_into(&vs, tensors, &path, |name| name.starts_with(&head_prefix))?;
    Ok(LoadedBody { vs, body, meta })
}

/// Copies named tensors into the variables of `vs`, strictly: every variable must be provided, every provided
/// tensor (except those `skip` accepts) must be a variable, and shapes must agree. Values are converted to each
/// variable's dtype and device. The first shape mismatch (in name order) is reported with both shapes.
pub fn copy_into(
    vs: &nn::VarStore,
    tensors: Vec<(String, Tensor)>,
    source: &Path,
    skip: impl Fn(&str) -> bool,
) -> Result<(), ModelError> {
    let mut vars = vs.variables();
    let mut provided: HashMap<String, Tensor> = HashMap::new();
    let mut unexpected = Vec::new();
    for (name, t) in tensors {
        if skip(&name) {
            continue;
        }
        if vars.contains_key(&name) {
            provided.insert(name, t);
        } else {
            unexpected.push(name);
        }
    }
    let mut missing: Vec<String> = vars
        .keys()
        .filter(|k| !provided.contains_key(*k))
        .cloned()
        .collect();
    missing.sort();
    unexpected.sort();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(ModelError::KeyMismatch {
            path: source.to_path_buf(),
            missing,
            unexpected,
        });
    }
    let mut names: Vec<&String> = provided.keys().collect();
    names.sort();
    for name in &names {
        let (var, src) = (&vars[*name], &provided[*name]);
        if var.size() != src.size() {
            return Err(ModelError::ShapeMismatch {
                path: source.to_path_buf(),
                name: name.to_string(),
                expected: var.size(),
                found: src.size(),
            });
        }
        if !is_float(src.kind()) && is_float(var.kind()) {
            return Err(ModelError::BadCheckpoint {
                path: source.to_path_buf(),
                problem: format!(
                    "tensor `{name}` has dtype {:?}, expected a floating-point tensor",
                    src.kind()
                ),
            });
        }
    }
    tch::no_grad(|| {
        for name in names {
            let var = vars
                .get_mut(name)
                .expect("name was checked to be a variable");
            let src = provided[name].to_device(var.device()).to_kind(var.kind());
            var.copy_(&src);
        }
    });
    Ok(())
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    )
}

/// The seed's checkpoint file-name stem, `seed={s}-epoch={e:02}-valid_loss={v:.3f}-model_name={name}_seed{s}`
/// (seed-system.md §3.3, §16), for users who want familiar directory names.
pub fn seed_style_name(seed: u64, epoch: u64, valid_loss: f64, model_name: &str) -> String {
    format!("seed={seed}-epoch={epoch:02}-valid_loss={valid_loss:.3}-model_name={model_name}_seed{seed}")
}
