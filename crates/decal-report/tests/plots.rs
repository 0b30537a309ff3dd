//! The figure writers end to end: files written, deterministic bytes, sane content. Set
//! `DECAL_REPORT_KEEP=<dir>` to keep the figures for looking at them.

use std::path::{Path, PathBuf};

use decal_report::plot::{
    write_score_histograms, write_severity_plot, ScoreHistogram, SeverityLine, SeverityPoint,
};

/// The seed's per-severity shift ECE as fractions (seed-system.md §12.1), with made-up spreads for the
/// multi-seed rows.
fn seed_severity_lines() -> Vec<SeverityLine> {
    let rows: [(&str, [f64; 5], Option<f64>, usize); 4] = [
        (
            "Baseline",
            [0.1102, 0.1386, 0.1741, 0.2385, 0.3410],
            None,
            1,
        ),
        ("TS", [0.0879, 0.1105, 0.1394, 0.1953, 0.2877], None, 1),
        (
            "TST",
            [0.0658, 0.0832, 0.1067, 0.1568, 0.2406],
            Some(0.003),
            10,
        ),
        (
            "V-TST m=10",
            [0.0375, 0.0504, 0.0700, 0.1160, 0.1979],
            Some(0.009),
            10,
        ),
    ];
    rows.iter()
        .map(|(label, ece, spread, n)| SeverityLine {
            label: label.to_string(),
            points: ece
                .iter()
                .enumerate()
                .map(|(i, e)| SeverityPoint {
                    severity: i as u8 + 1,
                    mean: *e,
                    spread: *spread,
                    n: *n,
                })
                .collect(),
        })
        .collect()
}

/// Deterministic pseudo-random scores in [0, 1] skewed towards 1 (`power` < 1) or spread out.
fn scores(n: usize, seed: u64, power: f64) -> Vec<f64> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            0.1 + 0.9 * u.powf(power)
        })
        .collect()
}

fn keep_dir() -> Option<PathBuf> {
    std::env::var_os("DECAL_REPORT_KEEP").map(PathBuf::from)
}

fn assert_same_files(a: &[PathBuf], b: &[PathBuf]) {
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{} differs from {}",
            x.display(),
            y.display()
        );
    }
}

#[test]
fn severity_plot_is_written_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let lines = seed_severity_lines();
    let note = "ECE: top-label, 10 bins (torchmetrics); error bars: sample std over n = 10 seeds";
    let write = |stem: &Path| {
        write_severity_plot(
            stem,
            &lines,
            "ece",
            "Shift ECE",
            "ECE under generated corruptions",
            note,
        )
        .unwrap()
    };
    let a = write(&dir.path().join("a"));
    let b = write(&dir.path().join("b"));
    assert_eq!(a.len(), 3);
    assert_same_files(&a, &b);
    let csv = std::fs::read_to_string(&a[2]).unwrap();
    assert!(
        csv.starts_with("method,severity,mean,spread,n\nBaseline,1,0.1102,,1\n"),
        "{csv}"
    );
    assert!(csv.contains("\nV-TST m=10,5,0.1979,0.009,10\n"), "{csv}");
    if let Some(k) = keep_dir() {
        write(&k.join("severity"));
    }
}

#[test]
fn more_series_than_colours_get_other_marker_shapes() {
    // Nine lines: the palette has seven colours, so lines 8 and 9 reuse colours 1 and 2 and must get a
    // different marker (a filled triangle: an SVG polygon) in the plot and in the legend.
    let base = seed_severity_lines();
    let lines: Vec<SeverityLine> = (0..9)
        .map(|i| SeverityLine {
            label: format!("method {i}"),
            ..base[i % base.len()].clone()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let polygons = |lines: &[SeverityLine], stem: &str| {
        let files = write_severity_plot(&dir.path().join(stem), lines, "ece", "Shift ECE", "t", "")
            .unwrap();
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        svg.matches("<polygon").count()
    };
    // 2 lines × (5 points + 1 legend entry) triangles.
    assert_eq!(polygons(&lines, "nine"), 12);
    assert_eq!(polygons(&lines[..7], "seven"), 0);
    if let Some(k) = keep_dir() {
        write_severity_plot(
            &k.join("severity-nine"),
            &lines,
            "ece",
            "Shift ECE",
            "t",
            "",
        )
        .unwrap();
    }
}

#[test]
fn score_histograms_are_written_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let id = scores(10_000, 1, 0.15);
    let svhn = scores(26_032, 2, 0.6);
    let tin = scores(10_000, 3, 0.4);
    let panels = vec![
        ScoreHistogram::from_scores(
            "Baseline",
            "Maximum softmax probability",
            "cifar10",
            &id,
            &[("svhn", &svhn), ("tinyimagenet", &tin)],
            30,
        )
        .unwrap(),
        ScoreHistogram::from_scores(
            "V-TST m=10",
            "Maximum softmax probability",
            "cifar10",
            &scores(10_000, 4, 0.3),
            &[
                ("svhn", &scores(26_032, 5, 1.0)),
                ("tinyimagenet", &scores(10_000, 6, 0.8)),
            ],
            30,
        )
        .unwrap(),
    ];
    let write = |stem: &Path| {
        write_score_histograms(stem, &panels, "OOD detection: MSP on ID vs OOD").unwrap()
    };
    let a = write(&dir.path().join("a"));
    let b = write(&dir.path().join("b"));
    assert_same_files(&a, &b);
    let back = decal_report::plot::histogram::read_histogram_csv(&a[2]).unwrap();
    assert_eq!(back, panels);
    if let Some(k) = keep_dir() {
        write(&k.join("ood_hist"));
    }
}
