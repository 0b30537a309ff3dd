//! `decal metrics` at scale, through the real binary: the memory-mapped, block-parallel path gives exactly
//! (bit for bit) what `decal_metrics::evaluate` gives on the same arrays in memory, for any thread count and
//! window size, and whichever reader feeds it (zero-copy float32 / float64 `.npy`, converted int32 labels,
//! CSV); and a non-finite NLL is written as the documented string `"inf"`, which decal-report reads back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use decal_io::npy::{self, NpyArray};
use decal_metrics::summary::{evaluate, PredictionInput, BLOCK_ROWS};
use decal_metrics::Profile;
use serde_json::Value;

fn decal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .expect("decal binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn metrics_json(args: &[&str], out: &Path) -> Value {
    let mut all = vec!["metrics"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", s(out)]);
    let o = decal(&all);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// Every number of a `decal metrics --json` result (the `inputs` object aside).
fn numbers(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("inputs");
    v
}

/// float32 logits with over-confident rows (exact-1.0 float32 confidences) and noisy labels.
fn data(n: usize, k: usize) -> (Vec<f32>, Vec<i64>) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut z = Vec::with_capacity(n * k);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let scale = if i % 4 == 0 { 40.0 } else { 4.0 };
        let row: Vec<f32> = (0..k).map(|_| ((next() - 0.5) * scale) as f32).collect();
        let best = (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as i64;
        y.push(if next() < 0.3 {
            (next() * k as f64) as i64 % k as i64
        } else {
            best
        });
        z.extend(row);
    }
    (z, y)
}

fn put(dir: &Path, name: &str, a: NpyArray) -> PathBuf {
    let p = dir.join(name);
    npy::write(&p, &a).unwrap();
    p
}

#[test]
fn mapped_block_parallel_path_equals_evaluate_bit_for_bit() {
    let (n, k) = (3 * BLOCK_ROWS + 77, 10);
    let (z, y) = data(n, k);
    let dir = tempfile::tempdir().unwrap();
    let z32 = put(
        dir.path(),
        "z32.npy",
        NpyArray::from_f32(vec![n, k], z.clone()),
    );
    let z64 = put(
        dir.path(),
        "z64.npy",
        NpyArray::from_f64(vec![n, k], z.iter().map(|&v| f64::from(v)).collect()),
    );
    let y64 = put(
        dir.path(),
        "y64.npy",
        NpyArray::from_i64(vec![n], y.clone()),
    );
    // int32 labels are not mapped but converted window by window.
    let y32 = dir.path().join("y32.npy");
    let mut header = npy::to_bytes(&NpyArray::from_i64(vec![n], vec![0; n])).unwrap();
    let data_at = header.len() - 8 * n;
    header.truncate(data_at);
    let text = String::from_utf8(header[10..].to_vec())
        .unwrap()
        .replace("<i8", "<i4");
    let mut bytes = header[..10].to_vec();
    bytes.extend_from_slice(text.as_bytes());
    y.iter()
        .for_each(|&v| bytes.extend_from_slice(&(v as i32).to_le_bytes()));
    std::fs::write(&y32, &bytes).unwrap();
    let csv = dir.path().join("z.csv");
    let mut text = String::new();
    for row in z.chunks(k) {
        let cells: Vec<String> = row.iter().map(|&v| format!("{:?}", f64::from(v))).collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    std::fs::write(&csv, text).unwrap();

    for (profile, extra) in [
        (Profile::paper(), vec!["--profile", "paper"]),
        (Profile::default_profile(), vec!["--profile", "default"]),
    ] {
        let expect = serde_json::to_value(evaluate(
            &PredictionInput::logits_f32(&z, k, &y).unwrap(),
            &profile,
        ))
        .unwrap();
        let mut runs = Vec::new();
        for (i, (logits, labels, threads, chunk)) in [
            (&z32, &y64, "1", "1000000"),
            (&z32, &y64, "2", "8192"),
            (&z32, &y64, "3", "1"),
            (&z64, &y64, "2", "8192"),
            (&z32, &y32, "2", "8192"),
            (&csv, &y64, "2", "20000"),
        ]
        .into_iter()
        .enumerate()
        {
            let out = dir.path().join(format!("{}-{i}.json", profile.name));
            let mut args = vec![
                "--logits",
                s(logits),
                "--labels",
                s(labels),
                "--threads",
                threads,
                "--chunk-rows",
                chunk,
            ];
            args.extend_from_slice(&extra);
            runs.push((
                format!("{} {threads} threads, chunk {chunk}", logits.display()),
                numbers(metrics_json(&args, &out)),
            ));
        }
        for (what, got) in runs {
            assert_eq!(got, expect, "{} profile: {what}", profile.name);
        }
    }
}

#[test]
fn infinite_nll_is_the_string_inf_in_metrics_json_and_reads_back_in_decal_report() {
    // Exact NLL (default profile) of probabilities with p_y = 0 for a true class: +inf, not null.
    let dir = tempfile::tempdir().unwrap();
    let p = put(
        dir.path(),
        "p.npy",
        NpyArray::from_f64(vec![3, 2], vec![1.0, 0.0, 0.3, 0.7, 0.5, 0.5]),
    );
    let y = put(
        dir.path(),
        "y.npy",
        NpyArray::from_i64(vec![3], vec![1, 1, 0]),
    );
    let v = metrics_json(
        &["--probs", s(&p), "--labels", s(&y)],
        &dir.path().join("m.json"),
    );
    assert_eq!(v["nll"], "inf", "{v}");
    assert_eq!(v["alternatives"]["nll_exact"], "inf");
    assert!(v["alternatives"]["nll_sklearn_clipped"].as_f64().unwrap() > 10.0);
    assert_eq!(
        decal_report::record::parse_value(v["nll"].as_str().unwrap()),
        Some(f64::INFINITY)
    );
    let back: decal_metrics::Summary = serde_json::from_value(numbers(v)).unwrap();
    assert_eq!(back.nll, f64::INFINITY);
}
