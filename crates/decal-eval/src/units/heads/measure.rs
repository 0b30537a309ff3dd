//! Measurement (ignored by default; run by hand): a head unit trains ONE seed with the batched trainer,
//! where the old `experiment::run` trained every seed of a head in one batched model. This compares, on a
//! finished old run directory (`DECAL_MEASURE_RUN`, e.g. `runs/seed-cnn-a10`: the imported seed CNN,
//! augmented views A = 10, held-out calibration features), the head of seed 0 trained alone against
//! (a) the same seed trained now inside a batch of seeds 0, 1, 2 (the old scheme, same process) and
//! (b) the head the old run saved; it prints the max abs differences of the weights and of the test
//! probabilities (m = 0 for V-TST) and asserts they stay within float tolerance (1e-4).
//!
//! Measured (2-core CPU, loaded), seed 0, 40 epochs: TST on the A = 10 views, V-TST on the views, TST on
//! the un-augmented features: alone vs the old run's head max |Δw| = 0 and max |Δp_test| = 0
//! (bit-identical) with the same selected epoch; TST views alone vs inside a batch of seeds 0–2 now: also 0.
//!
//! `DECAL_MEASURE_RUN=runs/seed-cnn-a10 scripts/cargo test --release -p decal-eval --lib \
//!  units::heads::measure -- --ignored --nocapture`

use std::path::{Path, PathBuf};

use decal_train::features::{self, FeatureSet};
use decal_train::stage2::{self, TrainedHead};
use decal_train::stage2_batched::{train_batched, BatchedSource};
use decal_train::views::ViewCache;
use tch::Device;

use crate::predict::{predict, Predictor};

fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn probs(head: &decal_models::heads::Head, test: &FeatureSet) -> Vec<f64> {
    let p = Predictor::Head {
        head,
        num_samples: 0,
        eval_seed: 1,
        temperature: 1.0,
    };
    predict(&p, test, Device::Cpu)
        .expect("prediction")
        .probabilities()
}

fn weights_diff(a: &tch::nn::VarStore, b: &tch::nn::VarStore) -> f64 {
    let (va, vb) = (a.variables(), b.variables());
    let mut names: Vec<&String> = va.keys().collect();
    let mut other: Vec<&String> = vb.keys().collect();
    names.sort();
    other.sort();
    assert_eq!(names, other);
    va.iter()
        .map(|(k, t)| {
            (t - &vb[k])
                .abs()
                .max()
                .to_kind(tch::Kind::Double)
                .double_value(&[])
        })
        .fold(0.0, f64::max)
}

/// The old run's head directory of `head` seed `seed` trained on features mode `mode`.
fn old_head(run: &Path, head: &str, seed: u64, mode: &str) -> PathBuf {
    let dir = run.join("heads").join(head);
    for e in std::fs::read_dir(&dir).expect("heads dir").flatten() {
        let meta: stage2::HeadCheckpointMeta = serde_json::from_str(
            &std::fs::read_to_string(e.path().join(stage2::HEAD_CONFIG)).expect("config.json"),
        )
        .expect("head meta");
        if meta.config.seed == seed && meta.features["mode"] == mode {
            return e.path();
        }
    }
    panic!("no {mode} head {head} seed {seed} in {}", dir.display());
}

#[test]
#[ignore = "measurement on a finished old run directory (DECAL_MEASURE_RUN)"]
fn one_seed_alone_matches_the_old_batched_seeds() {
    let run = PathBuf::from(std::env::var("DECAL_MEASURE_RUN").expect("DECAL_MEASURE_RUN"));
    let fdir = std::fs::read_dir(run.join("features"))
        .expect("features dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a features/<backbone> dir");
    let (fit, _) = features::load(&fdir, "calibration").expect("calibration features");
    let (test, _) = features::load(&fdir, "test").expect("test features");
    let (train, _) = features::load(&fdir, "train").expect("train features");
    let vdir = std::fs::read_dir(&fdir)
        .expect("features dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("views-")
        })
        .expect("a views cache");
    let views = ViewCache::open(&vdir).expect("views cache");
    // `DECAL_MEASURE_CASES`: head:mode pairs (default `tst:augmented`; also `v-tst:augmented`, `tst:cached`).
    let cases = std::env::var("DECAL_MEASURE_CASES").unwrap_or_else(|_| "tst:augmented".into());
    for case in cases.split(',') {
        let (head, mode) = case
            .split_once(':')
            .expect("DECAL_MEASURE_CASES: head:mode,…");
        let old_dir = old_head(&run, head, 0, mode);
        let (old_vs, old, meta) = stage2::load_head(&old_dir, Device::Cpu).expect("old head");
        let source = || match mode {
            "augmented" => BatchedSource::Views(&views),
            _ => BatchedSource::Fixed(&train),
        };
        let t = std::time::Instant::now();
        let alone: TrainedHead = train_batched(
            std::slice::from_ref(&meta.config),
            source(),
            &fit,
            Device::Cpu,
            &mut |_, _| {},
        )
        .expect("alone")
        .pop()
        .unwrap();
        let secs_alone = t.elapsed().as_secs_f64();
        let (pa, po) = (probs(&alone.head, &test), probs(&old, &test));
        println!(
            "{head} ({mode}) seed 0, {} epochs alone in {secs_alone:.1}s: best epoch {} (old run {}); \
             max|Δw| alone-vs-old {:.3e}; max|Δp_test| alone-vs-old {:.3e}",
            meta.config.epochs,
            alone.best_epoch,
            meta.best_epoch,
            weights_diff(&alone.vs, &old_vs),
            max_abs(&pa, &po)
        );
        // `DECAL_MEASURE_BATCH=0`: only the comparison with the old run's head.
        if std::env::var("DECAL_MEASURE_BATCH").is_ok_and(|v| v == "0") {
            continue;
        }
        let configs: Vec<_> = (0..3)
            .map(|s| stage2::Stage2Config {
                seed: s,
                ..meta.config.clone()
            })
            .collect();
        let t = std::time::Instant::now();
        let batch =
            train_batched(&configs, source(), &fit, Device::Cpu, &mut |_, _| {}).expect("batched");
        let secs_batch = t.elapsed().as_secs_f64();
        let pb = probs(&batch[0].head, &test);
        let (w_ab, p_ab) = (weights_diff(&alone.vs, &batch[0].vs), max_abs(&pa, &pb));
        println!(
            "{head} ({mode}) seed 0 inside a batch of seeds 0-2 now ({secs_batch:.1}s): best epoch {}; \
             max|Δw| alone-vs-batch {w_ab:.3e}; max|Δp_test| alone-vs-batch {p_ab:.3e}",
            batch[0].best_epoch
        );
        assert_eq!(alone.best_epoch, batch[0].best_epoch);
        assert!(p_ab < 1e-4 && w_ab < 1e-4, "{head}: {p_ab} {w_ab}");
    }
}
