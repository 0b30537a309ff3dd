//! Trained heads out, usable from PyTorch without decal: `model.safetensors` with PyTorch parameter names
//! and the head's architecture (and fitted temperatures) in the safetensors metadata, plus `model.py`
//! ([`MODEL_PY`]), a self-contained PyTorch module file whose `load(path)` rebuilds the head.
//!
//! Parameter names are those of the module in `model.py`, which are also decal's own variable names
//! ([`crate::heads`]):
//! - TST: `encoder.<i>.{weight,bias}` (ReLU between layers, none after the last), `decoder.{weight,bias}`;
//! - V-TST: `mean.<i>.…`, `logvar.<i>.…` (followed by `logsigmoid`, so σ² ∈ (0, 1]), `decoder.…`;
//! - REINIT: `linear.{weight,bias}`.
//!
//! Metadata (safetensors `__metadata__`, strings): `format` = [`FORMAT`], `kind`, `feature_dim`,
//! `latent_dim`, `num_classes`, `mlp_size`, and `temperatures`, a JSON object from prediction rule to
//! fitted T: `"logits"` for TST / REINIT, `"m=<m>"` (and `"mean"` for the mean latent) for V-TST; plus
//! free-form provenance entries from the caller.
//!
//! The file is written by hand (8-byte little-endian header length, the JSON header padded with spaces to
//! a multiple of 8 bytes, then the float32 little-endian data), atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::{nn, Kind};

use crate::heads::{HeadConfig, HeadKind};
use crate::ModelError;

/// The `format` metadata entry of an exported head.
pub const FORMAT: &str = "decal-head/1";

/// `model.py`: the PyTorch module that loads an exported head (`load(path) -> torch.nn.Module`).
pub const MODEL_PY: &str = include_str!("export_model.py");

/// The PyTorch parameter names of a head, in a fixed order (as `model.py` registers them).
pub fn parameter_names(config: &HeadConfig) -> Vec<String> {
    let mut names = Vec::new();
    let mut linear = |prefix: String| {
        names.push(format!("{prefix}.weight"));
        names.push(format!("{prefix}.bias"));
    };
    match config.kind {
        HeadKind::Reinit => linear("linear".into()),
        HeadKind::Tst | HeadKind::Vtst => {
            let layers = config.encoder_widths().len() - 1;
            let encoders: &[&str] = if config.kind == HeadKind::Tst {
                &["encoder"]
            } else {
                &["mean", "logvar"]
            };
            for e in encoders {
                for i in 0..layers {
                    linear(format!("{e}.{i}"));
                }
            }
            linear("decoder".into());
        }
    }
    names
}

/// Writes the head's variables (`vs`, built by [`HeadConfig::build`] at the store's root) to `path` as a
/// safetensors file with the metadata described in the module docs. `temperatures`: prediction rule →
/// fitted T (may be empty). `extra`: more metadata entries (e.g. `seed`, `name`, `decal_version`).
pub fn export_head(
    path: &Path,
    vs: &nn::VarStore,
    config: &HeadConfig,
    temperatures: &BTreeMap<String, f64>,
    extra: &BTreeMap<String, String>,
) -> Result<(), ModelError> {
    let bad = |problem: String| ModelError::BadCheckpoint {
        path: path.to_path_buf(),
        problem,
    };
    let vars = vs.variables();
    let expected = parameter_names(config);
    let mut found: Vec<&String> = vars.keys().collect();
    found.sort();
    let mut want: Vec<&String> = expected.iter().collect();
    want.sort();
    if found != want {
        return Err(bad(format!(
            "the head's variables {found:?} are not the PyTorch parameters {want:?} of a {} head",
            config.kind
        )));
    }
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for name in &expected {
        let t = &vars[name];
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(
            t.detach()
                .to_kind(Kind::Float)
                .to_device(tch::Device::Cpu)
                .flatten(0, -1),
        )
        .map_err(|e| ModelError::torch(path, e))?;
        if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("parameter {name} element {pos} is not finite")));
        }
        tensors.push((name.clone(), shape, values));
    }
    let mut metadata: BTreeMap<String, String> = extra.clone();
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("kind".into(), config.kind.name().into());
    metadata.insert("feature_dim".into(), config.feature_dim.to_string());
    metadata.insert("latent_dim".into(), config.latent_dim.to_string());
    metadata.insert("num_classes".into(), config.num_classes.to_string());
    metadata.insert("mlp_size".into(), config.mlp_size.to_string());
    metadata.insert(
        "temperatures".into(),
        serde_json::to_string(temperatures).expect("a map of floats serialises"),
    );
    let bytes = safetensors_bytes(&tensors, &metadata).map_err(bad)?;
    decal_core::write_atomic(path, &bytes)?;
    Ok(())
}

/// The bytes of a safetensors file holding float32 `tensors` (name, shape, row-major values) in the given
/// order, with `metadata`.
pub fn safetensors_bytes(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::to_value(metadata).expect("strings"),
    );
    let mut offset = 0usize;
    for (name, shape, values) in tensors {
        if shape.iter().product::<usize>() != values.len() {
            return Err(format!(
                "tensor {name}: shape {shape:?} does not hold {} values",
                values.len()
            ));
        }
        let end = offset + 4 * values.len();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut text = serde_json::to_string(&header).expect("a JSON header serialises");
    while (8 + text.len()) % 8 != 0 {
        text.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + text.len() + offset);
    bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    for (_, _, values) in tensors {
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(bytes)
}

/// Writes [`MODEL_PY`] as `dir/model.py` (atomically) and returns its path.
pub fn write_model_py(dir: &Path) -> Result<PathBuf, ModelError> {
    let path = dir.join("model.py");
    decal_core::write_atomic(&path, MODEL_PY.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// The exported file is a valid safetensors file (read back by the importer) with the head's weights
    /// under the PyTorch names, and the metadata.
    #[test]
    fn export_round_trips_through_the_safetensors_reader() {
        for config in [
            HeadConfig::tst(6, 4, 3).with_mlp_size(4),
            HeadConfig::vtst(6, 4, 3),
            HeadConfig::reinit(6, 3),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let _head = crate::seeded(1, || config.build(&vs.root())).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("model.safetensors");
            let temps = BTreeMap::from([("m=10".to_string(), 0.8)]);
            export_head(&path, &vs, &config, &temps, &BTreeMap::new()).unwrap();
            let state = crate::import::read_state_dict(&path).unwrap();
            let names: Vec<&str> = state.tensors.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, parameter_names(&config), "{config:?}");
            let vars = vs.variables();
            for (name, t) in &state.tensors {
                assert!(t.equal(&vars[name]), "{name}");
            }
            let bytes = std::fs::read(&path).unwrap();
            let st = safetensors::SafeTensors::read_metadata(&bytes).unwrap().1;
            let meta = st.metadata().as_ref().unwrap();
            assert_eq!(meta["kind"], config.kind.name());
            assert_eq!(meta["temperatures"], "{\"m=10\":0.8}");
            assert_eq!(
                (8 + u64::from_le_bytes(bytes[..8].try_into().unwrap())) % 8,
                0
            );
        }
    }

    #[test]
    fn a_store_with_other_names_is_refused() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = HeadConfig::tst(6, 4, 3)
            .build(&vs.root().sub("nested"))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = export_head(
            &dir.path().join("m.safetensors"),
            &vs,
            &HeadConfig::tst(6, 4, 3),
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("not the PyTorch parameters"),
            "{err}"
        );
    }
}
