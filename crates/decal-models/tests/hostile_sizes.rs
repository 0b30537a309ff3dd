//! Every size a checkpoint declares is untrusted: tiny PyTorch zips / safetensors files that declare huge
//! member sizes, tensor shapes or views are refused with a one-line error naming the file and the problem,
//! with less than 250 MiB of peak memory (each case runs in a child process, see `hostile/mod.rs`; no
//! `ulimit -v` here, libtorch maps gigabytes of address space). Also: a damaged `config.json` is reported as
//! damaged, not as a tensor-shape error in `model.safetensors`.

// The child-process harness (peak RSS, one-line error) is shared with decal-io's hostile_sizes tests.
#[path = "../../decal-io/tests/hostile/mod.rs"]
mod hostile;

use std::path::Path;

use hostile::assert_refused;

/// A stored zip archive of `(name, payload, declared size)` members, written by hand so that its central
/// directory can declare any size (above `u32::MAX` through a zip64 extra field).
fn zip_stored(members: &[(&str, &[u8], u64)]) -> Vec<u8> {
    let mut z = Vec::new();
    let mut central = Vec::new();
    for (name, payload, declared) in members {
        let zip64 = *declared > u32::MAX as u64;
        let s32 = |v: u64| if zip64 { u32::MAX } else { v as u32 };
        let packed = payload.len() as u64;
        let mut extra = Vec::new();
        if zip64 {
            extra.extend(1u16.to_le_bytes());
            extra.extend(16u16.to_le_bytes());
            extra.extend(declared.to_le_bytes());
            extra.extend(packed.to_le_bytes());
        }
        let crc = {
            let mut h = 0xFFFF_FFFFu32;
            for &b in *payload {
                h ^= b as u32;
                for _ in 0..8 {
                    h = if h & 1 != 0 {
                        (h >> 1) ^ 0xEDB8_8320
                    } else {
                        h >> 1
                    };
                }
            }
            !h
        };
        let offset = z.len() as u32;
        for (sig, out) in [(0x0403_4b50u32, &mut z), (0x0201_4b50u32, &mut central)] {
            out.extend(sig.to_le_bytes());
            if sig == 0x0201_4b50 {
                out.extend(45u16.to_le_bytes());
            }
            out.extend(45u16.to_le_bytes());
            out.extend(0u16.to_le_bytes());
            out.extend(0u16.to_le_bytes()); // stored
            out.extend([0u8; 4]);
            out.extend(crc.to_le_bytes());
            out.extend(s32(packed).to_le_bytes());
            out.extend(s32(*declared).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend((extra.len() as u16).to_le_bytes());
            if sig == 0x0201_4b50 {
                out.extend([0u8; 6]); // comment length, disk, internal attributes
                out.extend(0u32.to_le_bytes()); // external attributes
                out.extend(offset.to_le_bytes());
            }
            out.extend(name.as_bytes());
            out.extend(&extra);
            if sig == 0x0403_4b50 {
                out.extend(*payload);
            }
        }
    }
    let cd_start = z.len();
    z.extend(&central);
    z.extend(0x0605_4b50u32.to_le_bytes());
    z.extend([0u8; 4]);
    z.extend((members.len() as u16).to_le_bytes());
    z.extend((members.len() as u16).to_le_bytes());
    z.extend((central.len() as u32).to_le_bytes());
    z.extend((cd_start as u32).to_le_bytes());
    z.extend(0u16.to_le_bytes());
    z
}

fn read(p: &Path) -> Result<(), String> {
    decal_models::import::read_state_dict(p)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `{'w': _rebuild_tensor_v2(storage '0' of 1 float, offset 0, size (n, n), stride (0, 0))}`, protocol 2.
fn expanded_view_pickle(n: u32) -> Vec<u8> {
    let mut p = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ\x01\x00\x00\x00tQJ\x00\x00\x00\x00J".to_vec();
    p.extend(n.to_le_bytes());
    p.push(b'J');
    p.extend(n.to_le_bytes());
    p.extend(b"\x86J\x00\x00\x00\x00J\x00\x00\x00\x00\x86tRs.");
    p
}

#[test]
fn torch_zip_member_declaring_2_pow_62_bytes() {
    assert_refused(
        "torch_zip_member_declaring_2_pow_62_bytes",
        false,
        &[
            "hostile.pt",
            "zip member archive/data.pkl",
            "declares 4611686018427387904 bytes",
        ],
        || {
            let dir = tempfile::tempdir().unwrap();
            let pkl = expanded_view_pickle(1);
            let z = zip_stored(&[("archive/data.pkl", &pkl, 1 << 62)]);
            assert!(z.len() < 400, "a tiny archive: {} bytes", z.len());
            let p = dir.path().join("hostile.pt");
            std::fs::write(&p, z).unwrap();
            read(&p)
        },
    );
}

#[test]
fn torch_zip_zero_stride_view_of_2_pow_34_elements() {
    assert_refused(
        "torch_zip_zero_stride_view_of_2_pow_34_elements",
        false,
        &[
            "hostile.pt",
            "tensor `w`",
            "does not fit its storage of 1 elements",
        ],
        || {
            let dir = tempfile::tempdir().unwrap();
            let pkl = expanded_view_pickle(1 << 17);
            let z = zip_stored(&[
                ("archive/data.pkl", &pkl, pkl.len() as u64),
                ("archive/data/0", &[0u8; 4], 4),
            ]);
            let p = dir.path().join("hostile.pt");
            std::fs::write(&p, z).unwrap();
            read(&p)
        },
    );
}

#[test]
fn small_expanded_views_still_load() {
    // A genuine broadcast view (1 storage element seen as 64 × 64) is materialised.
    let dir = tempfile::tempdir().unwrap();
    let pkl = expanded_view_pickle(64);
    let z = zip_stored(&[
        ("archive/data.pkl", &pkl, pkl.len() as u64),
        ("archive/data/0", &1.5f32.to_le_bytes(), 4),
    ]);
    let p = dir.path().join("ok.pt");
    std::fs::write(&p, z).unwrap();
    let sd = decal_models::import::read_state_dict(&p).unwrap();
    assert_eq!(sd.tensors.len(), 1);
    assert_eq!(sd.tensors[0].1.size(), vec![64, 64]);
    assert_eq!(sd.tensors[0].1.double_value(&[63, 63]), 1.5);
}

#[test]
fn safetensors_declaring_a_huge_shape() {
    assert_refused(
        "safetensors_declaring_a_huge_shape",
        false,
        &["hostile.safetensors", "invalid safetensors file"],
        || {
            let dir = tempfile::tempdir().unwrap();
            let header =
                br#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#;
            let mut b = (header.len() as u64).to_le_bytes().to_vec();
            b.extend(header);
            b.extend([0u8; 8]);
            let p = dir.path().join("hostile.safetensors");
            std::fs::write(&p, b).unwrap();
            read(&p)
        },
    );
}

#[test]
fn safetensors_header_length_beyond_the_file() {
    assert_refused(
        "safetensors_header_length_beyond_the_file",
        false,
        &["hostile.safetensors", "not a PyTorch zip archive"],
        || {
            let dir = tempfile::tempdir().unwrap();
            let mut b = (1u64 << 62).to_le_bytes().to_vec();
            b.extend(b"{}");
            let p = dir.path().join("hostile.safetensors");
            std::fs::write(&p, b).unwrap();
            read(&p)
        },
    );
}

#[test]
fn a_damaged_config_json_is_reported_as_damaged() {
    use decal_models::checkpoint;
    let dir = tempfile::tempdir().unwrap();
    let arch = decal_models::ArchConfig::preset("cnn", 10).unwrap();
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    decal_models::try_build_classifier(&vs.root(), &arch).unwrap();
    let ck = dir.path().join("ck");
    checkpoint::save(&ck, &vs, &checkpoint::CheckpointMeta::new(arch, "test")).unwrap();
    checkpoint::load(&ck, tch::Device::Cpu).unwrap();
    let config = ck.join("config.json");
    let good = std::fs::read_to_string(&config).unwrap();
    // One digit of num_classes changed: still valid JSON. Without a checksum of config.json this was
    // reported as "model.safetensors: tensor `fc3.bias` has shape [10], the architecture expects [11]".
    let damaged = good.replacen("\"num_classes\": 10", "\"num_classes\": 11", 2);
    assert_ne!(damaged, good);
    std::fs::write(&config, &damaged).unwrap();
    let e = checkpoint::load(&ck, tch::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&config.display().to_string())
            && e.contains("does not match the config_sha256"),
        "{e}"
    );
    assert!(!e.contains("model.safetensors"), "{e}");
    // Damaged weights are the weights' checksum mismatch, as before.
    std::fs::write(&config, &good).unwrap();
    let weights = ck.join("model.safetensors");
    let mut w = std::fs::read(&weights).unwrap();
    let n = w.len();
    w[n - 3] ^= 0x5a;
    std::fs::write(&weights, &w).unwrap();
    let e = checkpoint::load(&ck, tch::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&weights.display().to_string()) && e.contains("does not match config.json"),
        "{e}"
    );
    // A config.json without the key (older checkpoints, or an edit accepted by removing it) is read unchecked.
    let mut v: serde_json::Value = serde_json::from_str(&damaged).unwrap();
    v.as_object_mut().unwrap().remove("config_sha256").unwrap();
    std::fs::write(&config, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    assert_eq!(checkpoint::read_meta(&ck).unwrap().num_classes, 11);
}

/// The stand-in for a fuzz target (libtorch cannot be linked into the cargo-fuzz crate): deterministic
/// mutations of a real `torch.save` archive and a real safetensors file — byte flips, boundary values in
/// length fields, truncations — must give errors (or a state dict), never a panic or an abort.
#[test]
fn mutated_real_checkpoints_never_panic() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let torch = std::fs::read(fixtures.join("cnn.pt")).unwrap();
    let mut st = Vec::new();
    {
        let header = br#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"I64","shape":[1],"data_offsets":[16,24]}}"#;
        st.extend((header.len() as u64).to_le_bytes());
        st.extend(header);
        st.extend([0u8; 24]);
    }
    decal_models::import::read_state_dict_from_bytes(Path::new("x.safetensors"), &st).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for case in 0..300 {
        let base = if case % 3 == 0 { &st } else { &torch };
        let mut b = base.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % b.len() as u64) as usize;
            match next() % 4 {
                0 => b[i] ^= 1 << (next() % 8),
                1 => b[i] = 0xFF,
                2 => {
                    let v = [0u8, 0x7F, 0x80, 0xFF][(next() % 4) as usize];
                    let end = (i + 4).min(b.len());
                    b[i..end].iter_mut().for_each(|x| *x = v);
                }
                _ => b.truncate(i.max(1)),
            }
        }
        let name = Path::new(if case % 3 == 0 {
            "m.safetensors"
        } else {
            "m.pt"
        });
        let _ = decal_models::import::read_state_dict_from_bytes(name, &b);
    }
}
