//! decal-calib against references (tests/golden in decal-metrics, made by make_golden.py): torch.optim.LBFGS
//! temperature (float64 and float32 runs), the exact optimum by bisection in torch, scikit-learn 1.1.3
//! IsotonicRegression; plus properties (temperature never changes the argmax, JSON round trip, refusal of
//! empty/single-class sets).

use std::path::PathBuf;

use decal_calib::{
    CalibError, Calibrator, HistogramBinning, IsotonicCalibrator, Method, TemperatureScaler,
    VectorScaler,
};
use decal_io::npy;
use proptest::prelude::*;
use serde_json::Value;

fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../decal-metrics/tests/golden"
    ))
}

fn golden(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(golden_dir().join(name)).unwrap()).unwrap()
}

/// The validation half (first 1500 rows) of the k10 fixture: float32 logits widened to f64, labels.
fn validation() -> (Vec<f64>, Vec<i64>) {
    let z = npy::read(&golden_dir().join("k10_logits.npy"))
        .unwrap()
        .to_f64_vec();
    let y = npy::read(&golden_dir().join("k10_labels.npy"))
        .unwrap()
        .to_labels()
        .unwrap();
    (z[..15000].to_vec(), y[..1500].to_vec())
}

#[test]
fn seed_lbfgs_matches_torch_lbfgs() {
    let g = golden("golden_torch.json");
    let (z, y) = validation();
    let ts = TemperatureScaler::fit_seed_lbfgs(&z, &y, 10).unwrap();
    let t64 = g["lbfgs_seed"]["float64"]["temperature"].as_f64().unwrap();
    let t32 = g["lbfgs_seed"]["float32"]["temperature"].as_f64().unwrap();
    // Same algorithm in the same precision as torch's float64 run: agreement to rounding.
    assert!(
        (ts.temperature - t64).abs() < 1e-10,
        "T = {} vs torch float64 {t64}",
        ts.temperature
    );
    // The seed ran in float32: within float32 noise of that too.
    assert!(
        (ts.temperature - t32).abs() < 1e-5,
        "T = {} vs torch float32 {t32}",
        ts.temperature
    );
    assert_eq!(
        ts.iterations as u64,
        g["lbfgs_seed"]["float64"]["n_iter"].as_u64().unwrap()
    );
    assert_eq!(
        ts.function_evals as u64,
        g["lbfgs_seed"]["float64"]["func_evals"].as_u64().unwrap()
    );
    let nll = g["lbfgs_seed"]["float64"]["nll_after"].as_f64().unwrap();
    assert!((ts.nll_after - nll).abs() < 1e-10);
    assert!(!ts.converged, "50 iterations at lr 0.01 stop by max_iter");
}

#[test]
fn exact_temperature_matches_torch_bisection() {
    let g = golden("golden_torch.json");
    let (z, y) = validation();
    let ts = TemperatureScaler::fit_exact(&z, &y, 10).unwrap();
    let t = g["temperature_exact"]["temperature"].as_f64().unwrap();
    assert!(
        (ts.temperature - t).abs() < 1e-9 * t,
        "T = {} vs {t}",
        ts.temperature
    );
    assert!((ts.nll_after - g["temperature_exact"]["nll_after"].as_f64().unwrap()).abs() < 1e-12);
    assert!((ts.nll_before - g["temperature_exact"]["nll_before"].as_f64().unwrap()).abs() < 1e-12);
    assert!(ts.converged && ts.iterations < 50, "{ts:?}");
    // The exact optimum is at least as good as the seed's LBFGS result.
    let lb = TemperatureScaler::fit_seed_lbfgs(&z, &y, 10).unwrap();
    assert!(ts.nll_after <= lb.nll_after);
}

#[test]
fn isotonic_matches_sklearn() {
    let g = golden("golden_sklearn.json");
    let p = npy::read(&golden_dir().join("k10_probs.npy"))
        .unwrap()
        .to_f64_vec();
    let y = npy::read(&golden_dir().join("k10_labels.npy"))
        .unwrap()
        .to_labels()
        .unwrap();
    let iso = IsotonicCalibrator::fit(&p[..15000], &y[..1500], 10).unwrap();
    let raw = iso.apply_unnormalised(&p[15000..15200]).unwrap();
    let expect: Vec<f64> = g["isotonic_raw_first20"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(raw.len(), expect.len());
    for (i, (a, b)) in raw.iter().zip(&expect).enumerate() {
        assert!((a - b).abs() < 1e-12, "element {i}: {a} vs sklearn {b}");
    }
}

#[test]
fn vector_scaling_beats_temperature_on_validation() {
    let (z, y) = validation();
    let ts = TemperatureScaler::fit_exact(&z, &y, 10).unwrap();
    let vs = VectorScaler::fit(&z, &y, 10).unwrap();
    assert!(vs.converged, "{vs:?}");
    // Vector scaling contains temperature scaling (w_k = 1/T, b = 0), so its optimum is no worse.
    assert!(
        vs.nll_after <= ts.nll_after + 1e-12,
        "{} vs {}",
        vs.nll_after,
        ts.nll_after
    );
}

#[test]
fn histogram_binning_is_perfectly_calibrated_on_its_fitting_bins() {
    let p = [0.9, 0.1, 0.9, 0.1, 0.2, 0.8, 0.2, 0.8];
    let y = [0, 1, 1, 1];
    let h = HistogramBinning::fit(&p, &y, 2, 10).unwrap();
    // Class 0 with p = 0.9: 1 of 2 positive → 0.5; class 1 with p = 0.1: 1 of 2 → 0.5.
    assert_eq!(h.values[0][9], 0.5);
    assert_eq!(h.values[1][1], 0.5);
    let out = h.apply(&p[..2]).unwrap();
    assert_eq!(out, vec![0.5, 0.5]);
}

#[test]
fn every_method_round_trips_through_json_and_reapplies() {
    let (z, y) = validation();
    let test = &z[..200];
    for method in [
        Method::Temperature,
        Method::TemperatureLbfgs,
        Method::Vector,
        Method::Histogram,
        Method::Isotonic,
    ] {
        let c = Calibrator::fit(method, &z, &y, 10).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: Calibrator = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c, "{method:?}");
        let a = c.apply(test, 10).unwrap();
        let b = back.apply(test, 10).unwrap();
        assert_eq!(a, b);
        for row in a.chunks(10) {
            assert!(
                (row.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                "{method:?} rows are distributions"
            );
        }
        assert!(matches!(
            c.apply(&z[..12], 12),
            Err(CalibError::ClassMismatch { .. })
        ));
    }
}

#[test]
fn refuses_bad_fitting_sets() {
    for method in [
        Method::Temperature,
        Method::TemperatureLbfgs,
        Method::Vector,
        Method::Histogram,
        Method::Isotonic,
    ] {
        assert_eq!(
            Calibrator::fit(method, &[], &[], 2).unwrap_err(),
            CalibError::Empty
        );
        let err = Calibrator::fit(method, &[1.0, 0.0, 2.0, 0.0], &[0, 0], 2).unwrap_err();
        assert_eq!(err, CalibError::SingleClass { n: 2, class: 0 });
        assert!(err.to_string().contains("at least two classes"));
        assert!(matches!(
            Calibrator::fit(method, &[1.0, 0.0, 2.0, 0.0], &[0, 2], 2).unwrap_err(),
            CalibError::LabelOutOfRange { row: 1, .. }
        ));
        assert!(matches!(
            Calibrator::fit(method, &[1.0, f64::NAN, 2.0, 0.0], &[0, 1], 2).unwrap_err(),
            CalibError::NonFinite { row: 0, col: 1, .. }
        ));
    }
}

#[test]
fn degenerate_temperature_is_an_error_not_a_number() {
    // Labels always on the lower logit: NLL decreases forever as T grows.
    let z = [2.0, 0.0, 0.0, 2.0];
    let err = TemperatureScaler::fit_exact(&z, &[1, 0], 2).unwrap_err();
    assert!(matches!(err, CalibError::Degenerate(_)), "{err}");
    // Perfectly separated: NLL decreases forever as T shrinks.
    let err = TemperatureScaler::fit_exact(&z, &[0, 1], 2).unwrap_err();
    assert!(err.to_string().contains("separated"), "{err}");
}

proptest! {
    #[test]
    fn temperature_never_changes_the_argmax(z in prop::collection::vec(-8.0f64..8.0, 3..60), t in 0.05f64..20.0) {
        let k = 3;
        let n = z.len() / k;
        let z = &z[..n * k];
        let ts = TemperatureScaler::fixed(t, k, 1);
        let p = ts.apply(z).unwrap();
        for (row, prow) in z.chunks(k).zip(p.chunks(k)) {
            prop_assert_eq!(decal_metrics::scoring::argmax(row), decal_metrics::scoring::argmax(prow));
        }
    }
}

#[test]
fn vector_scaling_without_some_class_in_validation_is_an_error() {
    // The k10 validation half with every row of classes 7 and 9 removed: their biases have no finite optimum
    // (NLL keeps falling as b_7, b_9 -> -inf). Before the fix the fit stopped where the gradient underflowed
    // 1e-9 and reported converged = true with arbitrary biases.
    let (z, y) = validation();
    let keep: Vec<usize> = (0..y.len()).filter(|&i| y[i] != 7 && y[i] != 9).collect();
    let zk: Vec<f64> = keep
        .iter()
        .flat_map(|&i| z[i * 10..(i + 1) * 10].to_vec())
        .collect();
    let yk: Vec<i64> = keep.iter().map(|&i| y[i]).collect();
    let err = VectorScaler::fit(&zk, &yk, 10).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CalibError::Degenerate(_)), "{err:?}");
    assert!(
        msg.contains("no finite optimum") && msg.contains("classes 7, 9") && !msg.contains('\n'),
        "{msg}"
    );
    assert!(
        Calibrator::fit(Method::Vector, &zk, &yk, 10).is_err(),
        "the CLI's path refuses it too"
    );
    // Temperature scaling has one parameter shared by all classes and still has a finite optimum here.
    assert!(
        TemperatureScaler::fit_exact(&zk, &yk, 10)
            .unwrap()
            .converged
    );
}
