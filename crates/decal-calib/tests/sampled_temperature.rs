//! Temperature scaling of an m-sample predictive (`TemperatureScaler::fit_sampled`, seed BUG-16 fixed)
//! against torch float64 + scipy references (tests/golden/make_golden.py): the optimum on a noisy
//! 8-sample fixture and on a 2-sample fixture whose NLL is not convex in 1/T, the objective and the
//! calibrated predictive at fixed T; m = 1 agrees with the exact fit; degenerate sets are errors.

use std::path::PathBuf;

use decal_calib::temperature::sampled_nll_at_temperature;
use decal_calib::{CalibError, TemperatureScaler};
use decal_io::npy;
use serde_json::Value;

fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"))
}

fn golden() -> Value {
    let text = std::fs::read_to_string(golden_dir().join("golden_sampled_ts.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Per-sample logits `[m, N, K]` (flat), m, labels, K.
fn fixture(name: &str) -> (Vec<f64>, usize, Vec<i64>, usize) {
    let z = npy::read(&golden_dir().join(format!("{name}_logits.npy"))).unwrap();
    let y = npy::read(&golden_dir().join(format!("{name}_labels.npy")))
        .unwrap()
        .to_labels()
        .unwrap();
    let (m, k) = (z.shape[0], z.shape[2]);
    (z.to_f64_vec(), m, y, k)
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-300)
}

#[test]
fn fit_matches_torch_scipy_reference() {
    let g = golden();
    for name in ["sampled", "pairs"] {
        let (z, m, y, k) = fixture(name);
        let r = &g[name];
        let ts = TemperatureScaler::fit_sampled(&z, m, &y, k).unwrap();
        let t = r["temperature"].as_f64().unwrap();
        assert!(
            close(ts.temperature, t, 1e-10),
            "{name}: T = {} vs {t}",
            ts.temperature
        );
        assert!(ts.converged, "{name}: {}", ts.stop_reason);
        assert_eq!(ts.num_samples, m);
        for (got, key) in [(ts.nll_before, "nll_before"), (ts.nll_after, "nll_after")] {
            let want = r[key].as_f64().unwrap();
            assert!(close(got, want, 1e-12), "{name} {key}: {got} vs {want}");
        }
        assert!(ts.nll_after <= ts.nll_before);
    }
    // The pairs fixture is the case the grid scan exists for: its NLL has negative curvature in beta.
    assert!(g["pairs"]["min_d2nll_dbeta2_on_0.05_3"].as_f64().unwrap() < 0.0);
}

#[test]
fn objective_and_predictive_match_reference_at_fixed_temperatures() {
    let g = golden();
    for name in ["sampled", "pairs"] {
        let (z, m, y, k) = fixture(name);
        let r = &g[name];
        for (t, key) in [
            (0.5, "nll_at_t0.5"),
            (2.0, "nll_at_t2"),
            (1.0, "nll_before"),
        ] {
            let want = r[key].as_f64().unwrap();
            let got = sampled_nll_at_temperature(&z, m, &y, k, t);
            assert!(close(got, want, 1e-12), "{name} T={t}: {got} vs {want}");
        }
        let scaler = TemperatureScaler::fixed(2.0, k, m);
        let p = scaler.apply_sampled(&z, m).unwrap();
        assert_eq!(p.len(), y.len() * k);
        let want: Vec<f64> = r["probs_t2_first3"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (a, b) in p.iter().zip(&want) {
            assert!((a - b).abs() < 1e-14, "{name}: {a} vs {b}");
        }
        for row in p.chunks(k) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }
}

/// With one sample the m-sample predictive is an ordinary softmax: the fit reaches the exact fit's optimum,
/// and both match the reference for the fixture's first sample.
#[test]
fn one_sample_reduces_to_the_exact_fit() {
    let g = golden();
    let (z, _, y, k) = fixture("sampled");
    let first = &z[..y.len() * k];
    let sampled = TemperatureScaler::fit_sampled(first, 1, &y, k).unwrap();
    let exact = TemperatureScaler::fit_exact(first, &y, k).unwrap();
    let t = g["sampled_m1"]["temperature"].as_f64().unwrap();
    assert!(
        close(sampled.temperature, exact.temperature, 1e-10),
        "{} vs {}",
        sampled.temperature,
        exact.temperature
    );
    assert!(
        close(sampled.temperature, t, 1e-10),
        "{} vs {t}",
        sampled.temperature
    );
    assert!(
        close(exact.temperature, t, 1e-9),
        "{} vs {t}",
        exact.temperature
    );
    assert!(close(sampled.nll_after, exact.nll_after, 1e-13));
    assert!(close(sampled.nll_before, exact.nll_before, 1e-13));
    // The same holds on the metrics crate's k10 fixture (1,500 validation rows, float32 logits).
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../decal-metrics/tests/golden"
    ));
    let z10 = npy::read(&dir.join("k10_logits.npy")).unwrap().to_f64_vec();
    let y10 = npy::read(&dir.join("k10_labels.npy"))
        .unwrap()
        .to_labels()
        .unwrap();
    let (z10, y10) = (&z10[..15000], &y10[..1500]);
    let a = TemperatureScaler::fit_sampled(z10, 1, y10, 10).unwrap();
    let b = TemperatureScaler::fit_exact(z10, y10, 10).unwrap();
    assert!(
        close(a.temperature, b.temperature, 1e-10),
        "{} vs {}",
        a.temperature,
        b.temperature
    );
    // And m copies of the same logits are the same predictive as one.
    let copies: Vec<f64> = z10.iter().chain(z10).chain(z10).copied().collect();
    let c = TemperatureScaler::fit_sampled(&copies, 3, y10, 10).unwrap();
    assert!(
        close(c.temperature, b.temperature, 1e-10),
        "{} vs {}",
        c.temperature,
        b.temperature
    );
}

#[test]
fn degenerate_and_malformed_inputs_are_errors() {
    // The pairs fixture's first sample is always right: perfectly separable, NLL falls as T -> 0.
    let (z, _, y, k) = fixture("pairs");
    let err = TemperatureScaler::fit_sampled(&z[..y.len() * k], 1, &y, k).unwrap_err();
    assert!(
        matches!(&err, CalibError::Degenerate(s) if s.contains("T -> 0")),
        "{err}"
    );
    // Logits that are the same for every class carry no information: NLL falls towards T -> infinity.
    let flat = vec![0.5; 2 * 4 * 3];
    let err = TemperatureScaler::fit_sampled(&flat, 2, &[0, 1, 2, 0], 3).unwrap_err();
    assert!(
        matches!(&err, CalibError::Degenerate(s) if s.contains("no information")),
        "{err}"
    );
    // Anti-correlated with the labels as well.
    let anti: Vec<f64> = [[0.0, 3.0], [3.0, 0.0]].concat();
    let err =
        TemperatureScaler::fit_sampled(&[anti.clone(), anti].concat(), 2, &[0, 1], 2).unwrap_err();
    assert!(
        matches!(&err, CalibError::Degenerate(s) if s.contains("T -> infinity")),
        "{err}"
    );
    // Shapes, m = 0, empty, non-finite values in a later sample, single class.
    let z = vec![0.0, 1.0, 1.0, 0.0, 0.2, 0.1, 0.3, 0.9];
    assert!(matches!(
        TemperatureScaler::fit_sampled(&z, 3, &[0, 1], 2),
        Err(CalibError::Shape { .. })
    ));
    assert!(matches!(
        TemperatureScaler::fit_sampled(&z, 0, &[0, 1], 2),
        Err(CalibError::Invalid(_))
    ));
    assert!(matches!(
        TemperatureScaler::fit_sampled(&[], 1, &[], 2),
        Err(CalibError::Empty)
    ));
    let mut bad = z.clone();
    bad[6] = f64::NAN;
    let err = TemperatureScaler::fit_sampled(&bad, 2, &[0, 1], 2).unwrap_err();
    assert!(
        matches!(err, CalibError::NonFinite { row: 3, col: 0, .. }),
        "{err}"
    );
    assert!(matches!(
        TemperatureScaler::fit_sampled(&z, 2, &[1, 1], 2),
        Err(CalibError::SingleClass { .. })
    ));
}

/// T > 0 never changes which class a single sample ranks first, but on a multi-sample predictive it
/// can: the fit is therefore checked for what it promises (lower validation NLL), not argmax stability.
#[test]
fn fitted_temperature_lowers_validation_nll_and_round_trips() {
    let (z, m, y, k) = fixture("sampled");
    let ts = TemperatureScaler::fit_sampled(&z, m, &y, k).unwrap();
    let at = |t: f64| sampled_nll_at_temperature(&z, m, &y, k, t);
    for f in [0.9, 0.99, 1.01, 1.1] {
        assert!(at(ts.temperature) <= at(ts.temperature * f));
    }
    let json = serde_json::to_string(&ts).unwrap();
    let back: TemperatureScaler = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ts);
    // A calibrator saved before `num_samples` existed reads as m = 1.
    let old = json.replace(&format!(",\"num_samples\":{m}"), "");
    assert_ne!(old, json);
    let back: TemperatureScaler = serde_json::from_str(&old).unwrap();
    assert_eq!(back.num_samples, 1);
}
