//! Import of PyTorch weights: `torch.save` zip archives (state_dicts, Lightning `.ckpt` files) and
//! `safetensors` files, read directly without Python.
//!
//! A `torch.save` file (PyTorch ≥ 1.6) is a zip archive `<prefix>/data.pkl` + `<prefix>/data/<key>` (raw
//! little-endian storages) + `<prefix>/byteorder`. `data.pkl` is parsed with [`decal_pickle::parse`], which
//! never imports or calls anything: the Lightning checkpoint's `hyper_parameters` pickle the seed's own
//! classes (seed-system.md §3.3) and are simply never looked at. Tensors are the reductions
//! `torch._utils._rebuild_tensor_v2(PersistentId(('storage', <dtype>Storage, key, location, numel)),
//! storage_offset, size, stride, …)`; they are rebuilt with their offset and strides (views and shared
//! storages work) and converted to the model's dtype (float32/float64/float16/bfloat16 sources).
//!
//! Key mapping to decal names (which are the seed modules' own names, see [`crate::arch`]):
//! - Lightning: the `model.` prefix is stripped (the network is the LightningModule's `.model`, §3.3);
//! - the seed's ViT wrapper (`vit.vit.*`, `vit.classifier.*`) and a bare HF `ViTModel` (`embeddings.*`,
//!   `encoder.*`, `layernorm.*`, `pooler.*`) are both mapped to the `ViTForImageClassification` layout;
//! - `*.num_batches_tracked` and a ViT `pooler.*` are ignored (recorded in the report);
//! - a ViT source without `classifier.*` (a backbone-only checkpoint such as `google/vit-base-patch16-224-in21k`)
//!   keeps a freshly initialised head (HF init), which the report says.
//!
//! Loading is strict otherwise: missing and unexpected tensors are listed, shape mismatches name the tensor.
//!
//! Entry points: [`import_pytorch`] / [`import_with_config`] (a whole classifier, ready for
//! [`crate::checkpoint::save`]), [`import_body`] (the feature extractor alone, also from the seed's stage-2
//! `qzx_body.*` layout), [`read_state_dict`] (raw tensors, no mapping).

use std::collections::HashMap;
use std::path::Path;

use decal_pickle::Value;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::checkpoint::{copy_into, CheckpointMeta, ImportSource, Selection};
use crate::{
    try_build_backbone, try_build_classifier, ArchConfig, Backbone, Classifier, ModelError,
};

/// The container format of an imported file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    /// `torch.save(model.state_dict())` (zip).
    PytorchZip,
    /// A PyTorch Lightning checkpoint (zip with `state_dict`, `epoch`, `hyper_parameters`, …).
    LightningCkpt,
    /// A `safetensors` file (e.g. Hugging Face `model.safetensors`).
    Safetensors,
}

impl SourceFormat {
    /// Kebab-case name, as stored in [`ImportSource::format`].
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::PytorchZip => "pytorch-zip",
            SourceFormat::LightningCkpt => "lightning-ckpt",
            SourceFormat::Safetensors => "safetensors",
        }
    }
}

/// A state_dict read from a file, before key mapping.
#[derive(Debug)]
pub struct StateDict {
    /// Container format.
    pub format: SourceFormat,
    /// `(key, tensor)` in file order; tensors are contiguous, on the CPU, in their stored dtype.
    pub tensors: Vec<(String, Tensor)>,
    /// Lightning's `epoch` (the epoch the checkpoint was saved at), when present.
    pub epoch: Option<i64>,
    /// Lightning's `hyper_parameters["dataset"]` when it is a plain string (the seed stores e.g. `CIFAR10`).
    pub dataset: Option<String>,
    /// Keys of non-tensor entries that were skipped.
    pub skipped_non_tensors: Vec<String>,
    /// Lightning `ModelCheckpoint` state: the monitored metric and its best value (the seed monitors
    /// `valid_loss_epoch`, §3.3).
    pub selection: Option<(String, f64)>,
    /// Lightning `ModelCheckpoint`'s `best_model_path` (the seed's file name encodes seed, epoch and run name).
    pub best_model_path: Option<String>,
}

/// The result of an import: a ready classifier plus the metadata to save it as a decal checkpoint.
#[derive(Debug)]
pub struct Imported {
    /// Holds the imported tensors.
    pub vs: nn::VarStore,
    /// The model over `vs`.
    pub classifier: Classifier,
    /// `stage = "imported"`, `source` filled in, `epoch`/`dataset` from a Lightning checkpoint when present.
    pub meta: CheckpointMeta,
    /// Human-readable notes (ignored tensors, freshly initialised head), one per line.
    pub notes: Vec<String>,
}

fn format_err(path: &Path, problem: impl Into<String>) -> ModelError {
    ModelError::Format {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Imports `file` as the preset `arch` with `num_classes` outputs onto the CPU.
pub fn import_pytorch(file: &Path, arch: &str, num_classes: i64) -> Result<Imported, ModelError> {
    import_with_config(file, &ArchConfig::preset(arch, num_classes)?, Device::Cpu)
}

/// Imports `file` (zip `.pt`/`.pth`/`.ckpt` or `.safetensors`) into a classifier of architecture `arch` on `device`.
pub fn import_with_config(
    file: &Path,
    arch: &ArchConfig,
    device: Device,
) -> Result<Imported, ModelError> {
    let sd = read_state_dict(file)?;
    let (mapped, ignored) = map_keys(&sd.tensors, arch);
    let vs = nn::VarStore::new(device);
    let classifier = try_build_classifier(&vs.root(), arch)?;
    let mut notes = Vec::new();
    if !ignored.is_empty() {
        notes.push(format!(
            "ignored {} source tensor(s): {}",
            ignored.len(),
            abbreviate(&ignored)
        ));
    }
    let mut tensors = mapped;
    let head_prefix = format!("{}.", arch.head_name());
    if matches!(arch, ArchConfig::Vit(_))
        && !tensors.iter().any(|(k, _)| k.starts_with(&head_prefix))
    {
        // A backbone-only ViT checkpoint: keep the fresh head (HF init: N(0, 0.02²) weight, zero bias).
        for (name, t) in vs.variables() {
            if name.starts_with(&head_prefix) {
                tensors.push((name, t.detach().copy()));
            }
        }
        notes.push(format!(
            "the source has no `{}` tensors: the {}-class head is freshly initialised (train it before use)",
            arch.head_name(),
            arch.num_classes()
        ));
    }
    copy_into(&vs, tensors, file, |_| false)?;
    let mut meta = CheckpointMeta::new(arch.clone(), "imported");
    meta.epoch = sd.epoch.and_then(|e| u64::try_from(e).ok());
    meta.dataset = sd.dataset.as_ref().map(|d| d.to_ascii_lowercase());
    meta.selection = sd.selection.as_ref().map(|(criterion, value)| Selection {
        criterion: criterion.clone(),
        value: *value,
    });
    if let Some(path) = &sd.best_model_path {
        // The seed's pattern `seed={s}-epoch={e}-valid_loss={v}-model_name={name}.ckpt` (§3.3).
        let stem = path
            .rsplit('/')
            .next()
            .unwrap_or(path)
            .trim_end_matches(".ckpt");
        for part in stem.split('-') {
            if let Some(seed) = part.strip_prefix("seed=").and_then(|s| s.parse().ok()) {
                meta.seed = Some(seed);
            }
        }
        if let Some((_, name)) = stem.split_once("model_name=") {
            meta.extra.insert("seed_model_name".into(), name.into());
        }
        meta.extra
            .insert("seed_best_model_path".into(), path.as_str().into());
    }
    meta.source = Some(ImportSource {
        path: file.display().to_string(),
        sha256: decal_core::sha256_file(file)?,
        format: sd.format.as_str().to_string(),
        ignored_keys: ignored,
    });
    Ok(Imported {
        vs,
        classifier,
        meta,
        notes,
    })
}

/// A body imported on its own (seed §5.6): the frozen feature extractor of stage 2.
#[derive(Debug)]
pub struct ImportedBody {
    /// Holds the body's tensors.
    pub vs: nn::VarStore,
    /// The body.
    pub body: Box<dyn Backbone>,
    /// Source tensors not used: the classifier head, the seed's stage-2 heads, BatchNorm counters, a ViT pooler.
    pub ignored_keys: Vec<String>,
}

/// Imports only the body of `arch` from `file`, like the seed's `construct_ClassYEncoderBody` (§5.6): from a
/// stage-1 checkpoint (the classifier head is dropped) or from one of the seed's stage-2 TST / V-TST checkpoints,
/// whose body lives under `qzx_body.` and whose heads (`qzx_model.`, `qzx_var.`, `pyz.`) are dropped.
/// Every body tensor must be present with the right shape.
pub fn import_body(
    file: &Path,
    arch: &ArchConfig,
    device: Device,
) -> Result<ImportedBody, ModelError> {
    let sd = read_state_dict(file)?;
    let strip_model = sd.tensors.iter().all(|(k, _)| k.starts_with("model."));
    let unprefixed: Vec<(String, Tensor)> = sd
        .tensors
        .iter()
        .map(|(k, t)| {
            let k = if strip_model {
                &k["model.".len()..]
            } else {
                k.as_str()
            };
            (k.to_string(), t.shallow_clone())
        })
        .collect();
    let two_stage = unprefixed.iter().any(|(k, _)| k.starts_with("qzx_body."));
    let mut ignored = Vec::new();
    let mut body_tensors = Vec::new();
    for (k, t) in unprefixed {
        match (two_stage, k.strip_prefix("qzx_body.")) {
            (true, Some(rest)) => body_tensors.push((rest.to_string(), t)),
            (true, None) => ignored.push(k),
            (false, _) => body_tensors.push((k, t)),
        }
    }
    let (mapped, more_ignored) = map_keys(&body_tensors, arch);
    ignored.extend(more_ignored);
    let head_prefix = format!("{}.", arch.head_name());
    let (head, body_only): (Vec<_>, Vec<_>) = mapped
        .into_iter()
        .partition(|(k, _)| k.starts_with(&head_prefix));
    ignored.extend(head.into_iter().map(|(k, _)| k));
    let vs = nn::VarStore::new(device);
    let body = try_build_backbone(&vs.root(), arch)?;
    copy_into(&vs, body_only, file, |_| false)?;
    Ok(ImportedBody {
        vs,
        body,
        ignored_keys: ignored,
    })
}

fn abbreviate(keys: &[String]) -> String {
    let shown: Vec<_> = keys.iter().take(4).cloned().collect();
    if keys.len() > 4 {
        format!("{}, … ({} more)", shown.join(", "), keys.len() - 4)
    } else {
        shown.join(", ")
    }
}

/// Maps source keys to decal names for `arch`; returns `(mapped, ignored keys)`.
pub fn map_keys(
    tensors: &[(String, Tensor)],
    arch: &ArchConfig,
) -> (Vec<(String, Tensor)>, Vec<String>) {
    // Lightning: the network is the module's `.model` attribute.
    let strip_model = !tensors.is_empty() && tensors.iter().all(|(k, _)| k.starts_with("model."));
    let is_vit = matches!(arch, ArchConfig::Vit(_));
    let hf_bare = is_vit && tensors.iter().any(|(k, _)| k.starts_with("embeddings."));
    let mut mapped = Vec::new();
    let mut ignored = Vec::new();
    for (key, t) in tensors {
        let mut k = key.as_str();
        if strip_model {
            k = &k["model.".len()..];
        }
        let name = if is_vit {
            if let Some(rest) = k.strip_prefix("vit.vit.") {
                format!("vit.{rest}") // the seed's wrapper: ViT.vit = ViTForImageClassification
            } else if let Some(rest) = k.strip_prefix("vit.classifier.") {
                format!("classifier.{rest}")
            } else if hf_bare && !k.starts_with("classifier.") && !k.starts_with("vit.") {
                format!("vit.{k}") // a bare ViTModel
            } else {
                k.to_string()
            }
        } else {
            k.to_string()
        };
        let name = if is_vit { vit_v5_to_hub(&name) } else { name };
        let is_pooler = is_vit && name.starts_with("vit.pooler.");
        if name.ends_with("num_batches_tracked") || is_pooler {
            ignored.push(key.clone());
        } else {
            mapped.push((name, t.shallow_clone()));
        }
    }
    (mapped, ignored)
}

/// transformers ≥ 5 renames ViT modules in memory (`vit.layers.N.attention.q_proj`, `mlp.fc1`, …), so a
/// `torch.save(model.state_dict())` from it uses those names; the Hub files (and decal) use the classic ones.
fn vit_v5_to_hub(name: &str) -> String {
    let Some(rest) = name.strip_prefix("vit.layers.") else {
        return name.to_string();
    };
    let Some((idx, sub)) = rest.split_once('.') else {
        return name.to_string();
    };
    let sub = [
        ("attention.q_proj.", "attention.attention.query."),
        ("attention.k_proj.", "attention.attention.key."),
        ("attention.v_proj.", "attention.attention.value."),
        ("attention.o_proj.", "attention.output.dense."),
        ("mlp.fc1.", "intermediate.dense."),
        ("mlp.fc2.", "output.dense."),
    ]
    .iter()
    .find_map(|(from, to)| sub.strip_prefix(from).map(|tail| format!("{to}{tail}")))
    .unwrap_or_else(|| sub.to_string());
    format!("vit.encoder.layer.{idx}.{sub}")
}

/// Reads every tensor of a `torch.save` zip archive, a Lightning checkpoint or a safetensors file.
pub fn read_state_dict(file: &Path) -> Result<StateDict, ModelError> {
    let bytes = std::fs::read(file).map_err(|source| ModelError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    read_state_dict_from_bytes(file, &bytes)
}

/// As [`read_state_dict`] on the file's content; `file` is only used in messages.
pub fn read_state_dict_from_bytes(file: &Path, bytes: &[u8]) -> Result<StateDict, ModelError> {
    if bytes.starts_with(b"PK\x03\x04") {
        return read_torch_zip(file, bytes);
    }
    if looks_like_safetensors(bytes) {
        let tensors = read_safetensors_bytes(file, bytes)?;
        return Ok(StateDict {
            format: SourceFormat::Safetensors,
            tensors,
            epoch: None,
            dataset: None,
            skipped_non_tensors: Vec::new(),
            selection: None,
            best_model_path: None,
        });
    }
    // Legacy torch.save (before 1.6) starts with a pickled magic number (protocol 2: 0x80 0x02 0x8a 0x0a …).
    if bytes.starts_with(&[0x80, 0x02, 0x8a, 0x0a]) {
        return Err(format_err(
            file,
            "legacy (non-zip) torch.save format; re-save it with torch>=1.6: torch.save(torch.load(f), 'new.pt')",
        ));
    }
    Err(format_err(
        file,
        "not a PyTorch zip archive (.pt/.pth/.ckpt) or a safetensors file",
    ))
}

/// Every tensor of a safetensors file, in file order, in its stored dtype.
fn read_safetensors_bytes(file: &Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>, ModelError> {
    use safetensors::Dtype;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format_err(file, format!("invalid safetensors file: {e:?}")))?;
    let mut names: Vec<(usize, String)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (view.data().as_ptr() as usize, name))
        .collect();
    names.sort(); // file order (by data offset), for stable messages
    let mut out = Vec::with_capacity(names.len());
    for (_, name) in names {
        let view = st
            .tensor(&name)
            .map_err(|e| format_err(file, format!("tensor `{name}`: {e:?}")))?;
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F64 => Kind::Double,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            Dtype::I16 => Kind::Int16,
            Dtype::I8 => Kind::Int8,
            Dtype::U8 => Kind::Uint8,
            Dtype::BOOL => Kind::Bool,
            other => {
                return Err(format_err(
                    file,
                    format!("tensor `{name}` has unsupported dtype {other:?}"),
                ))
            }
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| ModelError::torch(file, e))?;
        out.push((name, t));
    }
    Ok(out)
}

/// safetensors: u64 little-endian header length, then a JSON object.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    if bytes.len() < 10 {
        return false;
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    n >= 2 && (n as usize) <= bytes.len() - 8 && bytes[8] == b'{'
}

/// Most elements a view may have beyond its storage's: a view larger than its storage repeats elements (zero
/// strides, as `expand` makes); such a view is materialised only up to 2^24 elements (64 MiB of float32), so
/// a tiny file cannot make the importer allocate gigabytes (a 1-element storage viewed as 2^17 × 2^17).
const MAX_EXPANDED_VIEW_ELEMENTS: i128 = 1 << 24;

/// Storage element type from a `torch.<Name>Storage` global.
fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

struct ZipReader<'a> {
    file: &'a Path,
    archive: zip::ZipArchive<std::io::Cursor<&'a [u8]>>,
    archive_len: u64,
    prefix: String,
    storages: HashMap<String, Tensor>,
}

impl<'a> ZipReader<'a> {
    fn member(&mut self, name: &str) -> Result<Option<Vec<u8>>, ModelError> {
        let full = format!("{}{name}", self.prefix);
        let mut entry = match self.archive.by_name(&full) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(format_err(self.file, format!("zip member {full}: {e}"))),
        };
        // The central directory's sizes are untrusted: checked against the archive before reading, and the
        // buffer grows only as bytes arrive.
        use decal_core::bounded::{member_size_problem, Packing};
        let (size, packed) = (entry.size(), entry.compressed_size());
        let problem = match entry.compression() {
            zip::CompressionMethod::Stored => {
                member_size_problem(size, packed, Packing::Stored, self.archive_len)
            }
            zip::CompressionMethod::Deflated => {
                member_size_problem(size, packed, Packing::Deflated, self.archive_len)
            }
            other => Some(format!("unsupported compression method {other}")),
        };
        if let Some(p) = problem {
            return Err(format_err(
                self.file,
                format!("zip member {full}: corrupt archive member: {p}"),
            ));
        }
        let out = decal_core::bounded::read_exact_declared(&mut entry, size)
            .map_err(|e| format_err(self.file, format!("zip member {full}: {e}")))?;
        Ok(Some(out))
    }

    /// The 1-D storage `key` of `numel` elements of `kind` (cached: several tensors may share one storage).
    fn storage(&mut self, key: &str, kind: Kind, numel: i64) -> Result<Tensor, ModelError> {
        if let Some(t) = self.storages.get(key) {
            return Ok(t.shallow_clone());
        }
        let bytes = self.member(&format!("data/{key}"))?.ok_or_else(|| {
            format_err(
                self.file,
                format!("storage data/{key} is missing from the archive"),
            )
        })?;
        let elt = kind.elt_size_in_bytes() as i64;
        if numel < 0 || numel.checked_mul(elt) != Some(bytes.len() as i64) {
            return Err(format_err(
                self.file,
                format!(
                    "storage data/{key} has {} bytes, expected {numel} × {elt}",
                    bytes.len()
                ),
            ));
        }
        let t = Tensor::f_from_data_size(&bytes, &[numel], kind)
            .map_err(|e| ModelError::torch(self.file, e))?;
        self.storages.insert(key.to_string(), t.shallow_clone());
        Ok(t)
    }

    /// Rebuilds a tensor from a `_rebuild_tensor_v2` (or `_rebuild_parameter`) reduction; `None` if `v` is not one.
    fn tensor(&mut self, key: &str, v: &Value) -> Result<Option<Tensor>, ModelError> {
        let Value::Reduce { callable, args } = v else {
            return Ok(None);
        };
        let Some((module, name)) = callable.as_global() else {
            return Ok(None);
        };
        let Some(args) = args.as_seq() else {
            return Ok(None);
        };
        let bad = |what: &str| format_err(self.file, format!("tensor `{key}`: {what}"));
        match (module, name) {
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => {
                let inner = args
                    .first()
                    .ok_or_else(|| bad("empty _rebuild_parameter"))?;
                self.tensor(key, inner)
            }
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                if args.len() < 4 {
                    return Err(bad("_rebuild_tensor_v2 with fewer than 4 arguments"));
                }
                let Value::PersistentId(pid) = &args[0] else {
                    return Err(bad("storage is not a persistent id"));
                };
                let pid = pid.as_seq().ok_or_else(|| bad("malformed storage id"))?;
                if pid.len() < 5 || pid[0].as_str() != Some("storage") {
                    return Err(bad("malformed storage id"));
                }
                let (_, type_name) = pid[1]
                    .as_global()
                    .ok_or_else(|| bad("storage type is not a global"))?;
                let kind = storage_kind(type_name)
                    .ok_or_else(|| bad(&format!("unsupported storage type {type_name}")))?;
                let storage_key = pid[2]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| pid[2].as_int().map(|i| i.to_string()));
                let storage_key = storage_key.ok_or_else(|| bad("storage key is not a string"))?;
                let numel = pid[4]
                    .as_int()
                    .ok_or_else(|| bad("storage size is not an integer"))?;
                let offset = args[1]
                    .as_int()
                    .ok_or_else(|| bad("storage offset is not an integer"))?;
                let ints = |v: &Value, what: &str| -> Result<Vec<i64>, ModelError> {
                    v.as_seq()
                        .ok_or_else(|| bad(&format!("{what} is not a tuple")))?
                        .iter()
                        .map(|d| {
                            d.as_int()
                                .ok_or_else(|| bad(&format!("{what} holds a non-integer")))
                        })
                        .collect()
                };
                let size = ints(&args[2], "size")?;
                let stride = ints(&args[3], "stride")?;
                if size.len() != stride.len()
                    || size.iter().any(|&s| s < 0)
                    || stride.iter().any(|&s| s < 0)
                    || offset < 0
                {
                    return Err(bad(&format!(
                        "invalid size {size:?} / stride {stride:?} / offset {offset}"
                    )));
                }
                let storage = self.storage(&storage_key, kind, numel)?;
                let empty = size.contains(&0);
                // i128: sizes and strides come from the file and must not overflow the bounds check.
                let last = offset as i128
                    + size
                        .iter()
                        .zip(&stride)
                        .map(|(&s, &st)| (s as i128 - 1).max(0) * st as i128)
                        .sum::<i128>();
                let view_numel = size.iter().map(|&s| s as i128).product::<i128>();
                if !empty
                    && (last >= numel as i128
                        || view_numel > (numel as i128).max(MAX_EXPANDED_VIEW_ELEMENTS))
                {
                    return Err(bad(&format!(
                        "view (offset {offset}, size {size:?}, stride {stride:?}) does not fit its storage of {numel} elements"
                    )));
                }
                let torch_err = |e| ModelError::torch(self.file, e);
                let t = if empty {
                    Tensor::f_zeros(size.as_slice(), (kind, Device::Cpu)).map_err(torch_err)?
                } else {
                    storage
                        .f_as_strided(size.as_slice(), stride.as_slice(), offset)
                        .and_then(|v| v.f_contiguous())
                        .map_err(torch_err)?
                };
                Ok(Some(t))
            }
            _ => Ok(None),
        }
    }
}

fn read_torch_zip(file: &Path, bytes: &[u8]) -> Result<StateDict, ModelError> {
    let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format_err(file, format!("not a readable zip archive: {e}")))?;
    let pkl_name = archive
        .file_names()
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .ok_or_else(|| {
            format_err(
                file,
                "zip archive without <name>/data.pkl: not a torch.save file",
            )
        })?;
    let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();
    let mut reader = ZipReader {
        file,
        archive,
        archive_len: bytes.len() as u64,
        prefix,
        storages: HashMap::new(),
    };
    if let Some(order) = reader.member("byteorder")? {
        if order.trim_ascii() != b"little" {
            return Err(format_err(
                file,
                "big-endian torch.save archives are not supported",
            ));
        }
    }
    let pkl = reader.member("data.pkl")?.expect("data.pkl was listed");
    let root = decal_pickle::parse(&pkl).map_err(|e| format_err(file, format!("data.pkl: {e}")))?;

    // A Lightning checkpoint keeps the weights under "state_dict"; other training scripts use similar keys.
    let mut format = SourceFormat::PytorchZip;
    let mut sd = &root;
    for key in ["state_dict", "model_state_dict", "model"] {
        if let Some(inner) = root.get(key) {
            if inner.dict_items().is_some() {
                sd = inner;
                if key == "state_dict"
                    && (root.get("pytorch-lightning_version").is_some()
                        || root.get("epoch").is_some())
                {
                    format = SourceFormat::LightningCkpt;
                }
                break;
            }
        }
    }
    let items = sd.dict_items().ok_or_else(|| {
        format_err(
            file,
            "data.pkl does not hold a dict (expected a state_dict or a checkpoint)",
        )
    })?;
    let mut tensors = Vec::new();
    let mut skipped = Vec::new();
    for (k, v) in items {
        let key = k
            .as_str()
            .ok_or_else(|| format_err(file, "state_dict has a non-string key"))?
            .to_string();
        match reader.tensor(&key, v)? {
            Some(t) => tensors.push((key, t)),
            None => skipped.push(key),
        }
    }
    if tensors.is_empty() {
        return Err(format_err(
            file,
            "no tensors found (expected a state_dict or a Lightning checkpoint)",
        ));
    }
    let epoch = root.get("epoch").and_then(Value::as_int);
    let dataset = root
        .get("hyper_parameters")
        .and_then(|h| h.get("dataset"))
        .and_then(Value::as_str)
        .map(str::to_string);
    // Lightning's ModelCheckpoint callback state: {"ModelCheckpoint{...}": {"monitor", "best_model_score", …}}.
    let mut selection = None;
    let mut best_model_path = None;
    if let Some(callbacks) = root.get("callbacks").and_then(Value::dict_items) {
        for (name, state) in callbacks {
            if !name
                .as_str()
                .is_some_and(|n| n.starts_with("ModelCheckpoint"))
            {
                continue;
            }
            let score = match state.get("best_model_score") {
                Some(v) => reader
                    .tensor("best_model_score", v)?
                    .filter(|t| t.numel() == 1),
                None => None,
            };
            if let (Some(monitor), Some(score)) =
                (state.get("monitor").and_then(Value::as_str), score)
            {
                selection = Some((
                    monitor.to_string(),
                    score.to_kind(Kind::Double).double_value(&[]),
                ));
            }
            best_model_path = state
                .get("best_model_path")
                .and_then(Value::as_str)
                .map(str::to_string);
            break;
        }
    }
    Ok(StateDict {
        format,
        tensors,
        epoch,
        dataset,
        skipped_non_tensors: skipped,
        selection,
        best_model_path,
    })
}
