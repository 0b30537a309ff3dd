//! Writing the report unit's outputs (records, `results.json`, reliability CSVs, the report, the table),
//! publishing them to the run directory, and reading its summary back.

use std::path::{Path, PathBuf};

use decal_core::Provenance;
use decal_report::table::{aggregate, Table};
use decal_report::ReliabilitySeries;
use decal_train::features::BodyMode;
use decal_train::stage2::Selection;
use serde_json::{json, Value};

use super::collect::{Collected, Facts};
use super::ReportSpec;
use crate::experiment::{ExperimentConfig, SMOKE_NOTE};
use crate::plan::Unit;
use crate::units::UnitError;

/// What the report unit publishes to the run directory (files, then directories), relative to its own.
pub const PUBLISHED: &[&str] = &[
    "metrics.jsonl",
    "metrics.csv",
    "results.json",
    "results.md",
    "reliability",
    "ood_histograms",
    "predictions",
    "report",
];

/// What [`write`] did.
pub(super) struct Written {
    pub records: usize,
    pub methods: Vec<String>,
    pub warnings: Vec<String>,
}

/// Seed-compatibility options in effect (seed-system.md §15), one line each: shown with the warnings in the
/// report, because they change how rows are computed.
fn compat_notes(config: &ExperimentConfig) -> Vec<String> {
    let mut notes = Vec::new();
    if config.features.body == BodyMode::SeedBnDrift {
        notes.push("seed compatibility: stage-2 features come from the body in train mode, BatchNorm statistics drifting (features.body = \"seed-bn-drift\", seed BUG-7)".to_string());
    }
    for h in &config.heads {
        if !h.shuffle {
            notes.push(format!(
                "seed compatibility: head {} is trained without reshuffling between epochs (shuffle = false, seed BUG-5)",
                h.name
            ));
        }
        if h.selection == Selection::SeedLoss {
            notes.push(format!(
                "seed compatibility: head {} keeps the epoch with the lowest single-sample training-objective validation loss (selection = \"seed-loss\", seed Q-8)",
                h.name
            ));
        }
    }
    if let Some(d) = config.shift.as_ref().and_then(|s| s.severity_divisor) {
        notes.push(format!(
            "seed compatibility: per-severity shift metrics are divided by {d} instead of the number of corruptions evaluated (severity_divisor, seed BUG-1)"
        ));
    }
    notes
}

/// Writes every output of the report unit into `dir`.
pub(super) fn write(
    s: &ReportSpec,
    unit: &Unit,
    dir: &Path,
    mut c: Collected,
    facts: Facts,
) -> Result<Written, UnitError> {
    let config = &s.config;
    let mut warnings = s.plan_warnings.clone();
    warnings.extend(facts.warnings.iter().cloned());
    warnings.append(&mut c.warnings);
    let mut seen = std::collections::BTreeSet::new();
    warnings.retain(|w| seen.insert(w.clone()));
    let metrics = dir.join("metrics.jsonl");
    decal_report::record::write_jsonl(&metrics, &c.records)
        .map_err(UnitError::failed(unit, "writing metrics.jsonl"))?;
    decal_report::record::write_csv(&dir.join("metrics.csv"), &c.records)
        .map_err(UnitError::failed(unit, "writing metrics.csv"))?;
    let departures: Vec<&String> = facts.run_notes.iter().skip(2).collect();
    let mut results = json!({
        "experiment": config.name, "config": config, "warnings": warnings,
        "compat_notes": compat_notes(config),
        "recipe": {"name": config.recipe, "stage2": facts.run_notes.first(), "departures": departures},
        "backbone": facts.backbone, "features": facts.features, "validation": facts.validation,
        "results": c.results, "calibration": c.calibration, "provenance": Provenance::capture(),
    });
    if config.eval.smoke {
        results["smoke"] = json!(SMOKE_NOTE);
    }
    decal_core::write_json_atomic(&dir.join("results.json"), &results)
        .map_err(UnitError::failed(unit, "writing results.json"))?;
    write_reliability(dir, &c).map_err(UnitError::failed(unit, "writing reliability/"))?;
    let table = write_report(
        config,
        dir,
        &c.records,
        &c.method_order,
        &warnings,
        &facts.run_notes,
    )
    .map_err(UnitError::failed(unit, "writing the report"))?;
    decal_core::write_atomic(&dir.join("results.md"), table.as_bytes())
        .map_err(UnitError::failed(unit, "writing results.md"))?;
    Ok(Written {
        records: c.records.len(),
        methods: c.method_order,
        warnings,
    })
}

/// `reliability/<method>.csv`: each method's bins pooled over its seeds ([`decal_report::pool_bins`]).
fn write_reliability(dir: &Path, c: &Collected) -> Result<(), String> {
    for method in &c.method_order {
        let Some(list) = c.reliability.get(method) else {
            continue;
        };
        let first = &list[0];
        let bins =
            decal_report::pool_bins(list.iter().map(|r| r.bins.as_slice())).ok_or_else(|| {
                format!(
                    "{method}: its seeds' reliability bins differ in edges and cannot be pooled"
                )
            })?;
        let pooled = match list.len() {
            1 => "one run".to_string(),
            n => format!("{n} seeds pooled"),
        };
        let definition = format!(
            "top-label, {} equal-width bins, {:?} membership, {pooled}",
            first.num_bins, first.membership,
        );
        let ece = decal_report::bins_ece(&bins);
        let series = ReliabilitySeries {
            label: method.clone(),
            bins,
            ece,
            definition,
        };
        let path = dir
            .join("reliability")
            .join(format!("{}.csv", decal_report::slug(method)));
        decal_report::reliability::write_reliability_csv(&path, std::slice::from_ref(&series))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The report in `dir/report/` through [`decal_report::generate::generate_report`] (as `decal report`),
/// with the warnings and notes in its Warnings section; returns the comparison table (Markdown).
fn write_report(
    config: &ExperimentConfig,
    dir: &Path,
    records: &[decal_report::MetricRecord],
    method_order: &[String],
    warnings: &[String],
    run_notes: &[String],
) -> Result<String, String> {
    let title = format!(
        "{}{}: calibration of baseline, TS, TST and V-TST",
        if config.eval.smoke {
            "SMOKE RUN, NOT RESULTS — "
        } else {
            ""
        },
        config.name
    );
    let aggregates = aggregate(records).map_err(|e| e.to_string())?;
    let table = Table::paper(&title, &aggregates, config.eval.spread, method_order)
        .map_err(|e| e.to_string())?
        .to_markdown();
    let mut options = decal_report::generate::ReportOptions::new(dir.join("report"));
    options.title = title;
    options.method_order = method_order.to_vec();
    options.overlay = headline_overlay(config, method_order);
    options.description = config.description.clone();
    options.force = true;
    options.provenance = Some(Provenance::capture());
    options.notes = config
        .eval
        .smoke
        .then(|| SMOKE_NOTE.to_string())
        .into_iter()
        .chain(warnings.iter().cloned())
        .chain(run_notes.iter().cloned())
        .chain(compat_notes(config))
        .collect();
    options.spread = config.eval.spread;
    options.extra_files = vec![(PathBuf::from("results.md"), table.as_bytes().to_vec())];
    decal_report::generate::generate_report(&[dir.join("metrics.jsonl")], &options)
        .map_err(|e| e.to_string())?;
    Ok(table)
}

/// The study's headline reliability overlay: Baseline, TS and each head's main row (its largest m for
/// V-TST), e.g. Baseline, TS, TST, V-TST m=10, then the table's other methods; the report draws the first
/// four that have data (so a study without heads or TS still gets an overlay).
fn headline_overlay(config: &ExperimentConfig, method_order: &[String]) -> Vec<String> {
    let heads = config.heads.iter().filter_map(|spec| {
        crate::units::heads::head_rows(spec)
            .into_iter()
            .max_by_key(|(_, m)| *m)
            .map(|(name, _)| name)
    });
    let mut overlay: Vec<String> = Vec::new();
    let candidates = ["Baseline", "TS"]
        .into_iter()
        .map(String::from)
        .chain(heads)
        .chain(method_order.iter().cloned());
    for name in candidates {
        if !overlay.contains(&name) {
            overlay.push(name);
        }
    }
    overlay
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UnitError + '_ {
    move |e| UnitError::Input {
        unit: "report".into(),
        problem: format!("{}: {e}", path.display()),
    }
}

/// Copies the report unit's outputs ([`PUBLISHED`]) from its directory `report_dir` to the top level of
/// `run_dir`, each atomically: a file through a temporary file and a rename, a directory staged beside its
/// place and swapped in (the previous one removed afterwards), so a reader never sees a half-written
/// one. A directory the report no longer writes (e.g. `predictions/` after `save_predictions = false`) is
/// removed. Returns the published paths.
pub fn publish(report_dir: &Path, run_dir: &Path) -> Result<Vec<PathBuf>, UnitError> {
    let mut out = Vec::new();
    for name in PUBLISHED {
        let (from, to) = (report_dir.join(name), run_dir.join(name));
        if from.is_file() {
            super::collect::copy_file(&from, &to).map_err(|problem| UnitError::Input {
                unit: "report".into(),
                problem,
            })?;
            out.push(to);
        } else if from.is_dir() {
            let staged = run_dir.join(format!(".{name}.publishing"));
            let old = run_dir.join(format!(".{name}.old"));
            for p in [&staged, &old] {
                if p.exists() {
                    std::fs::remove_dir_all(p).map_err(io(p))?;
                }
            }
            super::collect::copy_tree(&from, &staged).map_err(|problem| UnitError::Input {
                unit: "report".into(),
                problem,
            })?;
            if to.exists() {
                std::fs::rename(&to, &old).map_err(io(&to))?;
            }
            std::fs::rename(&staged, &to).map_err(io(&staged))?;
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(io(&old))?;
            }
            out.push(to);
        } else if to.is_dir() {
            std::fs::remove_dir_all(&to).map_err(io(&to))?;
        }
    }
    Ok(out)
}

/// The comparison table (Markdown, `results.md`) and the warnings (`results.json` `"warnings"`) of a
/// report unit's directory (or of a run directory it was published to).
pub fn summary(report_dir: &Path) -> Result<(String, Vec<String>), UnitError> {
    let md = report_dir.join("results.md");
    let table = std::fs::read_to_string(&md).map_err(io(&md))?;
    let rj = report_dir.join("results.json");
    let text = std::fs::read_to_string(&rj).map_err(io(&rj))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| UnitError::Input {
        unit: "report".into(),
        problem: format!("{}: {e}", rj.display()),
    })?;
    let warnings = value["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((table, warnings))
}
