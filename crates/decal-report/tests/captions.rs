//! Captions show the definitions of real `decal run` records (strings as decal-eval writes them for
//! the quickstart, plus a shift column) concisely but exactly: the expected text is spelled out.

use decal_report::record::MetricRecord;
use decal_report::table::{aggregate, Spread, Table};

const ACC: &str = "fraction with argmax_k p_k == y (ties -> lowest index); profile default";
const ECE: &str = "top-label, equal-width, 15 bins, bins [lo,hi) on float32 torch.linspace edges plus an extra bin for confidence == 1.0 (torchmetrics 1.1.2); fraction (x100 when rendered: false); profile default";
const MCE: &str = "max over non-empty bins of |acc - conf|, same bins as ece; profile default";
const NLL: &str = "exact: mean -log softmax(z)_y via log-softmax (or -ln p_y of given probabilities), nats; profile default";
const BRIER: &str = "canonical: mean_i sum_k (p_ik - 1[y_i=k])^2, in [0, 2]; profile default";
const TRAIN_NLL: &str = "exact: mean -log softmax(z)_y via log-softmax (or -ln p_y of given probabilities), nats; profile default; 10000 training images incl. the validation part, un-augmented";
const SHIFT_ECE: &str = "top-label, equal-width, 15 bins, bins [lo,hi) on float32 torch.linspace edges plus an extra bin for confidence == 1.0 (torchmetrics 1.1.2); fraction (x100 when rendered: false); profile default; pooled over all 95 corruption cells (seed's SHIFT aggregation)";
const AUROC: &str = "AUROC (Mann-Whitney, ties count 1/2); score: maximum softmax probability (MSP) of the predictive distribution; ID = 2000 test images positive, OOD = 2000 images of mnist";
const FPR95: &str = "FPR at 95% TPR, ID positive, exact k-th largest ID score threshold; score: maximum softmax probability (MSP) of the predictive distribution; ID = 2000 test images positive, OOD = 2000 images of mnist";

fn table() -> Table {
    let cols: [(&str, &str, &str); 9] = [
        ("test", "accuracy", ACC),
        ("test", "ece", ECE),
        ("test", "mce", MCE),
        ("test", "nll", NLL),
        ("test", "brier", BRIER),
        ("train", "nll", TRAIN_NLL),
        ("shift", "ece", SHIFT_ECE),
        ("ood", "auroc", AUROC),
        ("ood", "fpr95", FPR95),
    ];
    let records: Vec<MetricRecord> = cols
        .iter()
        .map(|(split, metric, definition)| MetricRecord {
            run: "quickstart".into(),
            seed: Some(0),
            method: "TST".into(),
            split: split.to_string(),
            dataset: if *split == "ood" {
                "mnist"
            } else {
                "fashion-mnist"
            }
            .into(),
            corruption: None,
            severity: None,
            metric: metric.to_string(),
            value: 0.5,
            definition: definition.to_string(),
        })
        .collect();
    Table::paper(
        "quickstart",
        &aggregate(&records).unwrap(),
        Spread::Std,
        &[],
    )
    .unwrap()
}

#[test]
fn real_definitions_are_concise_and_exact() {
    let t = table();
    let entries: Vec<String> = t
        .caption_definitions()
        .iter()
        .map(|(h, d)| format!("{h}: {d}"))
        .collect();
    assert_eq!(
        entries,
        [
            "Profile: default (Acc, ECE, MCE, NLL, Brier, Train NLL, Shift ECE)",
            "Acc: top-1 (argmax ties -> lowest index)",
            "ECE: top-label, 15 equal-width bins, torchmetrics membership",
            "MCE: max |acc - conf| over non-empty bins, ECE's bins",
            "NLL: exact mean -ln p_y (log-softmax), nats",
            "Brier: canonical (sum over classes, in [0, 2])",
            "Train NLL: as NLL; 10000 training images incl. the validation part, un-augmented",
            "Shift ECE: as ECE; pooled over all 95 corruption cells (seed's SHIFT aggregation)",
            "OOD AUROC: exact AUROC, ties 1/2; MSP score; ID = 2000 test images positive, OOD = 2000 images of mnist",
            "FPR95 (exact): fpr95_idpos, exact; rest as OOD AUROC",
        ]
    );
    // Every column is named by an entry; the units clause that contradicted the "(%)" header is gone.
    for c in &t.columns {
        assert!(
            entries.iter().any(|e| e
                .split(": ")
                .next()
                .unwrap()
                .split(", ")
                .any(|h| h == c.header)),
            "{} has no definition",
            c.header
        );
    }
    let caption = t.caption();
    assert!(!caption.contains("x100"), "{caption}");
    let full: usize = [
        ACC, ECE, MCE, NLL, BRIER, TRAIN_NLL, SHIFT_ECE, AUROC, FPR95,
    ]
    .iter()
    .map(|d| d.len())
    .sum();
    let short: usize = entries.iter().map(String::len).sum();
    assert!(short * 2 < full, "{short} of {full} characters");
    // The full strings are still in the lossless aggregates (not this module's concern to shorten).
    assert!(t.column_definitions().iter().any(|(_, d)| d == ECE));
}

#[test]
fn latex_caption_escapes_definition_characters() {
    let tex = table().to_latex("tab:q");
    assert!(
        tex.contains("MCE: max \\textbar{}acc - conf\\textbar{} over non-empty bins"),
        "{tex}"
    );
    assert!(
        tex.contains("argmax ties -\\textgreater{} lowest index"),
        "{tex}"
    );
    assert!(
        tex.contains("exact mean -ln p\\_y (log-softmax), nats"),
        "{tex}"
    );
    // Only ASCII in the caption (plus nothing LaTeX needs a package for).
    let caption = &tex[tex.find("\\caption{").unwrap()..tex.find("\\label").unwrap()];
    assert!(caption.is_ascii(), "{caption}");
}
