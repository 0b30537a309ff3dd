//! The stable-toolchain mutation fuzzer ([`decal_core::fuzz`]) over the checkpoint readers: `torch.save` zip
//! archives (`.pt`, Lightning `.ckpt`) and `safetensors` files, through
//! [`decal_models::import::read_state_dict_from_bytes`] (zip members, the pickle, tensor rebuilding with
//! offsets and strides, dtype conversion into libtorch tensors). Seeds in `fuzz/seeds/{torch_zip,safetensors}/`
//! (made by `fuzz/seeds/make_checkpoint_seeds.py`), panicking inputs saved to `fuzz/artifacts/<target>/`.
//! An abort (a failed allocation, a libtorch crash) ends the process: run it under `/usr/bin/time -v` to see
//! the peak memory as well.
//!
//! `torch_zip` mutates whole archives, which mostly fail the zip's CRC checks; `torch_pickle` mutates only
//! `data.pkl` and re-packs it, with its CRC, beside the storages of `fuzz/seeds/torch_zip/state_dict.pt`, so
//! the pickle interpretation and the tensor rebuilding (keys, dtypes, sizes, offsets and strides against the
//! storages) see the mutations (its seeds, `fuzz/seeds/torch_pickle/`, are the seed archives' `data.pkl`).
//!
//! Usage: `fuzz_checkpoint <torch_zip|torch_pickle|safetensors|all> <seconds per target> [seed]`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use decal_core::fuzz::Target;

fn targets() -> Vec<(&'static str, Target)> {
    vec![
        ("torch_zip", |d| {
            let _ = decal_models::import::read_state_dict_from_bytes(Path::new("f.pt"), d);
        }),
        ("torch_pickle", |d| {
            let zip = repack(d);
            let _ = decal_models::import::read_state_dict_from_bytes(Path::new("f.pt"), &zip);
        }),
        ("safetensors", |d| {
            let _ = decal_models::import::read_state_dict_from_bytes(Path::new("f.safetensors"), d);
        }),
    ]
}

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"))
}

/// The members of the seed archive other than `data.pkl` (name, bytes).
fn storages() -> &'static [(String, Vec<u8>)] {
    static MEMBERS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    MEMBERS.get_or_init(|| {
        let path = root().join("seeds/torch_zip/state_dict.pt");
        let bytes = std::fs::read(&path).expect("fuzz/seeds/torch_zip/state_dict.pt");
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip archive");
        let mut out = Vec::new();
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).expect("a member");
            let name = f.name().to_string();
            if !name.ends_with("/data.pkl") {
                let mut data = Vec::new();
                f.read_to_end(&mut data).expect("readable");
                out.push((name, data));
            }
        }
        out
    })
}

/// A torch.save archive with `pickle` as its `data.pkl` and the seed's storages.
fn repack(pickle: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("state_dict/data.pkl", options).expect("zip");
    w.write_all(pickle).expect("zip");
    for (name, data) in storages() {
        w.start_file(name.as_str(), options).expect("zip");
        w.write_all(data).expect("zip");
    }
    w.finish().expect("zip").into_inner()
}

fn main() {
    let args = decal_core::fuzz::Args::from_env();
    tch::set_num_threads(1);
    // The seeds themselves must load, or the mutations would only explore error paths.
    for dir in ["torch_zip", "torch_pickle", "safetensors"] {
        for e in std::fs::read_dir(root().join("seeds").join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            let bytes = if dir == "torch_pickle" {
                repack(&bytes)
            } else {
                bytes
            };
            match decal_models::import::read_state_dict_from_bytes(&e.path(), &bytes) {
                Ok(sd) => println!(
                    "seed {dir}/{}: {} tensors",
                    e.file_name().to_string_lossy(),
                    sd.tensors.len()
                ),
                Err(err) => println!(
                    "seed {dir}/{}: does not load: {err}",
                    e.file_name().to_string_lossy()
                ),
            }
        }
    }
    if decal_core::fuzz::run(&root(), &targets(), &args.which, args.secs, args.seed) {
        std::process::exit(1);
    }
}
