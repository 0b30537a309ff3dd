//! Table aggregation against numpy reference values, and snapshot tests of the rendered tables
//! (exact expected strings: any change to number formatting or layout must be deliberate).

use decal_report::record::MetricRecord;
use decal_report::table::{aggregate, aggregates_to_csv, mean_std_se, Spread, Table};

fn rec(
    method: &str,
    seed: u64,
    split: &str,
    dataset: &str,
    metric: &str,
    value: f64,
    definition: &str,
) -> MetricRecord {
    MetricRecord {
        run: format!("wrn/{method}/seed-{seed}"),
        seed: Some(seed),
        method: method.into(),
        split: split.into(),
        dataset: dataset.into(),
        corruption: None,
        severity: None,
        metric: metric.into(),
        value,
        definition: definition.into(),
    }
}

const ECE_DEF: &str = "top-label, 10 bins, torchmetrics membership";
const ACC_DEF: &str = "top-1";
const NLL_DEF: &str = "nats, sklearn log_loss";

/// Three methods × three seeds, CIFAR-10-like numbers (seed-system.md §12.1 magnitudes).
fn fixture() -> Vec<MetricRecord> {
    let mut out = Vec::new();
    // method, then per seed: accuracy, ECE, NLL, shift accuracy, OOD AUROC.
    type Row = (
        &'static str,
        [f64; 3],
        [f64; 3],
        [f64; 3],
        [f64; 3],
        [f64; 3],
    );
    let rows: [Row; 3] = [
        (
            "Baseline",
            [0.9252, 0.9250, 0.9254],
            [0.0606, 0.0610, 0.0602],
            [0.5124, 0.5130, 0.5118],
            [0.7602, 0.7600, 0.7604],
            [0.8744, 0.8740, 0.8748],
        ),
        (
            "TST",
            [0.9254, 0.9256, 0.9255],
            [0.0334, 0.0336, 0.0332],
            [0.2516, 0.2520, 0.2512],
            [0.7578, 0.7577, 0.7579],
            [0.8831, 0.8830, 0.8832],
        ),
        (
            "V-TST m=10",
            [0.9244, 0.9246, 0.9242],
            [0.0138, 0.0140, 0.0136],
            [0.2579, 0.2583, 0.2575],
            [0.7587, 0.7585, 0.7589],
            [0.8510, 0.8515, 0.8505],
        ),
    ];
    for (method, acc, ece, nll, shift_acc, auroc) in rows {
        for s in 0..3 {
            let seed = s as u64 + 1;
            out.push(rec(
                method, seed, "test", "cifar10", "accuracy", acc[s], ACC_DEF,
            ));
            out.push(rec(method, seed, "test", "cifar10", "ece", ece[s], ECE_DEF));
            out.push(rec(method, seed, "test", "cifar10", "nll", nll[s], NLL_DEF));
            out.push(rec(
                method,
                seed,
                "shift",
                "cifar10-generated-corruptions",
                "accuracy",
                shift_acc[s],
                ACC_DEF,
            ));
            out.push(rec(
                method,
                seed,
                "ood",
                "svhn",
                "auroc",
                auroc[s],
                "MSP, ID positive",
            ));
        }
    }
    out
}

#[test]
fn aggregation_matches_numpy() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/aggregation.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = golden.as_object().unwrap();
    assert_eq!(cases.len(), 5);
    for (name, case) in cases {
        let values: Vec<f64> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let (mean, std, se) = mean_std_se(&values);
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * b.abs().max(1e-300) || a == b;
        let tol = if name == "offset" { 1e-9 } else { 1e-12 };
        assert!(
            close(mean, case["mean"].as_f64().unwrap(), 1e-12),
            "{name}: mean {mean}"
        );
        assert!(
            close(std.unwrap(), case["std"].as_f64().unwrap(), tol),
            "{name}: std {std:?}"
        );
        assert!(
            close(se.unwrap(), case["se"].as_f64().unwrap(), tol),
            "{name}: se {se:?}"
        );
    }
    assert_eq!(mean_std_se(&[0.25, 0.25, 0.25]).1, Some(0.0));
    assert_eq!(mean_std_se(&[0.5]), (0.5, None, None));
}

#[test]
fn aggregate_groups_by_key_and_counts_true_n() {
    let aggs = aggregate(&fixture()).unwrap();
    assert_eq!(aggs.len(), 15);
    let tst_acc = aggs
        .iter()
        .find(|a| a.method == "TST" && a.metric == "accuracy" && a.split == "test")
        .unwrap();
    assert_eq!(tst_acc.n, 3);
    assert_eq!(
        tst_acc.runs,
        [
            "wrn/TST/seed-1 (seed 1)",
            "wrn/TST/seed-2 (seed 2)",
            "wrn/TST/seed-3 (seed 3)"
        ]
    );
    assert!((tst_acc.std.unwrap() - 1e-4).abs() < 1e-15);
    // Passing the same records twice (e.g. a run directory given twice) does not inflate n.
    let doubled: Vec<_> = fixture().into_iter().chain(fixture()).collect();
    assert_eq!(aggregate(&doubled).unwrap(), aggs);
}

#[test]
fn conflicting_values_and_definitions_are_refused() {
    let mut records = fixture();
    let mut clash = records[0].clone();
    clash.value = 0.5;
    records.push(clash);
    let err = aggregate(&records).unwrap_err().to_string();
    assert_eq!(
        err,
        "run wrn/Baseline/seed-1 (seed 1) has two different values (0.9252 and 0.5) for method \"Baseline\", split \"test\", dataset \"cifar10\", metric \"accuracy\""
    );
    let mut records = fixture();
    records[1].definition = "top-label, 15 bins, (lo,hi]".into();
    let err = aggregate(&records).unwrap_err().to_string();
    assert!(
        err.contains("disagree on the definition") && err.contains("15 bins"),
        "{err}"
    );
}

const MARKDOWN: &str = "**WRN-28-10, CIFAR-10**

| Method | Acc (%) | ECE (%) | NLL | Shift Acc (%) | OOD AUROC |
|:---|---:|---:|---:|---:|---:|
| Baseline | 92.52 ± 0.02 | 6.06 ± 0.04 | 0.5124 ± 0.0006 | 76.02 ± 0.02 | 0.8744 ± 0.0004 |
| TST | 92.55 ± 0.01 | 3.34 ± 0.02 | 0.2516 ± 0.0004 | 75.78 ± 0.01 | 0.8831 ± 0.0001 |
| V-TST m=10 | 92.44 ± 0.02 | 1.38 ± 0.02 | 0.2579 ± 0.0004 | 75.87 ± 0.02 | 0.8510 ± 0.0005 |

Mean ± sample standard deviation (ddof = 1) over n = 3 runs per cell. Acc, ECE, Shift Acc in percent. Definitions. Acc, Shift Acc: top-1. ECE: top-label, 10 bins, torchmetrics membership. NLL: nats, sklearn log_loss. OOD AUROC: MSP, ID positive.
";

#[test]
fn markdown_snapshot() {
    let aggs = aggregate(&fixture()).unwrap();
    let table = Table::paper("WRN-28-10, CIFAR-10", &aggs, Spread::Std, &[]).unwrap();
    assert_eq!(table.to_markdown(), MARKDOWN);
}

const LATEX: &str = r"\begin{table}[t]
\centering
\caption{WRN-28-10, CIFAR-10. Mean $\pm$ standard error of the mean (sample std with ddof = 1 divided by the square root of n) over n = 3 runs per cell. Acc, ECE, Shift Acc in percent. Definitions. Acc, Shift Acc: top-1. ECE: top-label, 10 bins, torchmetrics membership. NLL: nats, sklearn log\_loss. OOD AUROC: MSP, ID positive.}
\label{tab:main}
\begin{tabular}{lrrrrr}
\toprule
Method & Acc (\%) & ECE (\%) & NLL & Shift Acc (\%) & OOD AUROC \\
\midrule
V-TST m=10 & 92.44 $\pm$ 0.01 & 1.38 $\pm$ 0.01 & 0.2579 $\pm$ 0.0002 & 75.87 $\pm$ 0.01 & 0.8510 $\pm$ 0.0003 \\
Baseline & 92.52 $\pm$ 0.01 & 6.06 $\pm$ 0.02 & 0.5124 $\pm$ 0.0003 & 76.02 $\pm$ 0.01 & 0.8744 $\pm$ 0.0002 \\
TST & 92.55 $\pm$ 0.01 & 3.34 $\pm$ 0.01 & 0.2516 $\pm$ 0.0002 & 75.78 $\pm$ 0.01 & 0.8831 $\pm$ 0.0001 \\
\bottomrule
\end{tabular}
\end{table}
";

#[test]
fn latex_snapshot_with_se_and_method_order() {
    let aggs = aggregate(&fixture()).unwrap();
    let table = Table::paper(
        "WRN-28-10, CIFAR-10",
        &aggs,
        Spread::Se,
        &["V-TST m=10".to_string()],
    )
    .unwrap();
    assert_eq!(table.to_latex("tab:main"), LATEX);
}

const CSV: &str = "method,Acc (%) mean,Acc (%) std,Acc (%) n,ECE (%) mean,ECE (%) std,ECE (%) n,NLL mean,NLL std,NLL n,Shift Acc (%) mean,Shift Acc (%) std,Shift Acc (%) n,OOD AUROC mean,OOD AUROC std,OOD AUROC n
Baseline,92.52,0.02,3,6.06,0.04,3,0.5124,0.0006,3,76.02,0.02,3,0.8744,0.0004,3
TST,92.55,0.01,3,3.34,0.02,3,0.2516,0.0004,3,75.78,0.01,3,0.8831,0.0001,3
V-TST m=10,92.44,0.02,3,1.38,0.02,3,0.2579,0.0004,3,75.87,0.02,3,0.8510,0.0005,3
";

#[test]
fn csv_snapshot() {
    let aggs = aggregate(&fixture()).unwrap();
    let table = Table::paper("WRN-28-10, CIFAR-10", &aggs, Spread::Std, &[]).unwrap();
    assert_eq!(table.to_csv(), CSV);
}

const MIXED: &str = "**Mixed**

| Method | n | Acc (%) | OOD AUROC (svhn) | OOD AUROC (tinyimagenet) |
|:---|---:|---:|---:|---:|
| Baseline | 1 | 92.52 | 0.8744 | — |
| TST | 1-3 | 92.55 ± 0.01 (n=3) | 0.8831 ± 0.0001 (n=3) | 0.9012 (n=1) |

Mean ± sample standard deviation (ddof = 1); n (runs per cell) differs between methods and is given in the n column (where a method's cells differ, as a range there and in each cell); cells with n = 1 show no spread. Acc in percent. Definitions. Acc: top-1. OOD AUROC (svhn), OOD AUROC (tinyimagenet): MSP, ID positive.
";

#[test]
fn mixed_n_and_several_ood_sets_snapshot() {
    let records: Vec<MetricRecord> = fixture()
        .into_iter()
        .filter(|r| (r.method == "TST" || r.seed == Some(1)) && r.method != "V-TST m=10")
        .filter(|r| r.metric == "accuracy" && r.split == "test" || r.metric == "auroc")
        .chain([rec(
            "TST",
            1,
            "ood",
            "tinyimagenet",
            "auroc",
            0.9012,
            "MSP, ID positive",
        )])
        .collect();
    let aggs = aggregate(&records).unwrap();
    let table = Table::paper("Mixed", &aggs, Spread::Std, &[]).unwrap();
    assert_eq!(table.to_markdown(), MIXED);
}

#[test]
fn long_aggregate_csv_is_lossless() {
    let aggs = aggregate(&fixture()[..1]).unwrap();
    assert_eq!(
        aggregates_to_csv(&aggs),
        "method,split,dataset,corruption,severity,metric,n,mean,std,se,min,max,definition\nBaseline,test,cifar10,,,accuracy,1,0.9252,,,0.9252,0.9252,top-1\n"
    );
}

#[test]
fn empty_table_is_a_clear_error() {
    let err = Table::paper("t", &[], Spread::Std, &[])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("no records for the results table"), "{err}");
}
