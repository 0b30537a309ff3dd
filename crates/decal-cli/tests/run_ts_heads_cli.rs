//! `decal run` with temperature scaling of the stage-2 heads (seed BUG-16 fixed) on the bundled quickstart
//! data (real Fashion-MNIST / MNIST subsets): the "TS + <row>" rows exist for TST and every V-TST m, their
//! T (per seed, in results.json) is finite and positive and lowers the validation NLL of the row's own
//! predictive, fitted with the row's m; the seed-compatibility row exists only for single predictions; and
//! the report in `<run>/report/` is decal-report's complete report (tables, reliability and OOD score
//! figures, manifest) with the run's warnings and seed-compatibility options in it. A second run reuses
//! every fit and evaluation.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn decal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .unwrap()
}

fn write_config(dir: &Path, vtst_extra: &str) -> PathBuf {
    let data = repo_root().join("data/quickstart");
    let text = format!(
        r#"
name = "ts-heads"
seeds = [0, 1]
temperature_scaling = true

[data]
dataset = "fashion-mnist"
dir = "{data}/fashion-mnist"
allow_subset = true
limit_train = 2000
limit_val = 500
limit_test = 500

[backbone.train]
model = "cnn-mnist"
epochs = 1
batch_size = 128
lr = 0.001
augment = false

[[heads]]
name = "TST"
kind = "tst"
latent_dim = 16
epochs = 3
lr = 0.001
temperature_scaling = true
temperature_scaling_seed_lbfgs = true
shuffle = false

[[heads]]
name = "V-TST"
kind = "vtst"
latent_dim = 16
epochs = 3
lr = 0.001
eval_samples = [1, 4]
temperature_scaling = true
{vtst_extra}

[[ood]]
name = "mnist"
dataset = "mnist"
dir = "{data}/mnist"
allow_subset = true
limit = 300

[[ood]]
name = "missing"
dataset = "svhn"
dir = "{missing}"

[eval]
bootstrap = 20
"#,
        data = data.display(),
        missing = dir.join("no-such-dir").display()
    );
    let path = dir.join("experiment.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn ts_head_rows_are_fitted_on_the_rows_predictive_and_reported() {
    if !repo_root().join("data/quickstart/fashion-mnist").exists() {
        eprintln!("skipping: bundled data/quickstart not present");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "temperature_scaling_seed_lbfgs = true");
    let out = tmp.path().join("run");
    let args = [
        "run",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
    ];
    let first = decal(&args);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "decal run failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&first.stdout);
    for row in [
        "| TS + TST |",
        "| TS (seed LBFGS) + TST |",
        "| TS + V-TST m=1 |",
        "| TS + V-TST m=4 |",
        "| TS (seed LBFGS) + V-TST m=1 |",
    ] {
        assert!(stdout.contains(row), "table lacks {row}:\n{stdout}");
    }
    // The seed cannot scale m > 1, so there is no compatibility row for it.
    assert!(!stdout.contains("TS (seed LBFGS) + V-TST m=4"), "{stdout}");

    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let calibration = results["calibration"].as_object().unwrap();
    for seed in [0, 1] {
        for (row, m, method) in [
            ("TS + TST", 1, "exact-newton"),
            ("TS (seed LBFGS) + TST", 1, "seed-lbfgs"),
            ("TS + V-TST m=1", 1, "sampled-log-t-newton"),
            ("TS + V-TST m=4", 4, "sampled-log-t-newton"),
            ("TS (seed LBFGS) + V-TST m=1", 1, "seed-lbfgs"),
        ] {
            let fit = &calibration[&format!("{row} seed {seed}")];
            let t = fit["temperature"].as_f64().unwrap();
            assert!(t.is_finite() && t > 0.0, "{row} seed {seed}: T = {t}");
            assert_eq!(fit["num_samples"].as_u64().unwrap(), m, "{row}");
            assert_eq!(fit["fit_method"].as_str().unwrap(), method, "{row}");
            let (before, after) = (
                fit["nll_before"].as_f64().unwrap(),
                fit["nll_after"].as_f64().unwrap(),
            );
            if method != "seed-lbfgs" {
                // The exact fits minimise the validation NLL, so it can only go down.
                assert!(
                    after <= before + 1e-12,
                    "{row} seed {seed}: {before} -> {after}"
                );
                assert!(fit["converged"].as_bool().unwrap(), "{row}: {fit}");
            }
        }
    }
    let records = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let test_acc = |method: &str| -> Vec<f64> {
        records
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["method"] == method && r["split"] == "test" && r["metric"] == "accuracy")
            .map(|r| r["value"].as_f64().unwrap())
            .collect()
    };
    // Temperature never changes a deterministic head's argmax: TS + TST has TST's accuracy, seed by seed.
    assert_eq!(test_acc("TS + TST"), test_acc("TST"));
    assert_eq!(test_acc("TS + TST").len(), 2);
    assert_eq!(test_acc("TS + V-TST m=4").len(), 2);

    // The report is decal-report's: tables, figures (reliability per method, OOD score histograms), the
    // manifest, and the run's warning about the missing OOD set in its Warnings section.
    let report = out.join("report");
    for f in [
        "index.html",
        "report.json",
        "tables/main.md",
        "tables/aggregates.csv",
        "results.md",
    ] {
        assert!(report.join(f).is_file(), "report/{f} missing");
    }
    let plots: Vec<String> = std::fs::read_dir(report.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        plots
            .iter()
            .any(|p| p.starts_with("reliability-ts-v-tst-m-4") && p.ends_with(".svg")),
        "{plots:?}"
    );
    assert!(
        plots
            .iter()
            .any(|p| p.starts_with("ood-scores") && p.ends_with(".png")),
        "{plots:?}"
    );
    // More than four methods have reliability data: the overlay is the study's headline — Baseline, TS
    // and each head's main row (V-TST's largest m) — not the first four rows of the table.
    let overlay =
        std::fs::read_to_string(report.join("plots/reliability-overlay-selected-methods.csv"))
            .unwrap();
    let series: Vec<&str> = overlay
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .fold(Vec::new(), |mut v, s| {
            if v.last() != Some(&s) {
                v.push(s);
            }
            v
        });
    assert_eq!(series, ["Baseline", "TS", "TST", "V-TST m=4"], "{overlay}");
    let main_md = std::fs::read_to_string(report.join("tables/main.md")).unwrap();
    let printed_table = std::fs::read_to_string(report.join("results.md")).unwrap();
    assert!(
        main_md.starts_with(&printed_table),
        "{main_md}\n---\n{printed_table}"
    );
    assert!(stdout.contains(printed_table.trim_end()), "{stdout}");
    assert!(
        main_md.contains("**Warnings**") && main_md.contains("OOD set missing skipped"),
        "{main_md}"
    );
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("OOD set missing skipped"));
    // Seed-compatibility options in effect are listed with the warnings (and in results.json).
    assert!(
        main_md.contains("head TST is trained without reshuffling") && main_md.contains("BUG-5"),
        "{main_md}"
    );
    assert!(results["compat_notes"][0]
        .as_str()
        .unwrap()
        .contains("BUG-5"));

    // Second run: every unit (fits included) is reused, the records are identical, the report is replaced.
    let second = decal(&args);
    let stderr2 = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr2}");
    assert!(stderr2.contains(" 0 units computed"), "{stderr2}");
    // The plan finds every unit fresh (the fits included): nothing runs.
    assert!(stderr2.contains(" 0 to run"), "{stderr2}");
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(),
        records
    );
    assert!(report.join("report.json").is_file());
    // `report/` is a report decal report recognises (results.md is listed in its manifest): regenerating it
    // with `decal report` needs no --force.
    let again = decal(&[
        "report",
        out.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Dropping the compatibility rows drops their reliability files and figures from the report.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("temperature_scaling_seed_lbfgs = true", ""),
    )
    .unwrap();
    let third = decal(&args);
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert!(!out.join("reliability/ts-seed-lbfgs-tst.csv").exists());
    let plots: Vec<String> = std::fs::read_dir(report.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !plots.iter().any(|p| p.contains("ts-seed-lbfgs-tst")),
        "{plots:?}"
    );
    assert!(!String::from_utf8_lossy(&third.stdout).contains("TS (seed LBFGS) + TST"));
}

#[test]
fn seed_lbfgs_ts_needs_a_single_sample_row_and_ts_names_are_reserved() {
    let tmp = tempfile::tempdir().unwrap();
    let base = "name = \"x\"\n[data]\ndataset = \"fashion-mnist\"\ndir = \"d\"\n[backbone]\ncheckpoint = \"c\"\n";
    let path = tmp.path().join("bad.toml");
    std::fs::write(
        &path,
        format!("{base}[[heads]]\nname = \"V-TST\"\nkind = \"vtst\"\neval_samples = [10]\ntemperature_scaling_seed_lbfgs = true\n"),
    )
    .unwrap();
    let out = decal(&["run", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("needs m = 1 in eval_samples"),
        "{err}"
    );
    std::fs::write(
        &path,
        format!("{base}[[heads]]\nname = \"TS + mine\"\nkind = \"tst\"\n"),
    )
    .unwrap();
    let out = decal(&["run", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("reserved"), "{err}");
    std::fs::write(
        &path,
        format!(
            "{base}[[heads]]\nname = \"T\"\nkind = \"tst\"\ntemperature_scaling_heads = true\n"
        ),
    )
    .unwrap();
    let out = decal(&["run", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("temperature_scaling_heads"),
        "{err}"
    );
}
