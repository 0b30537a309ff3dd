//! Named recipes of an experiment config (`recipe = "seed" | "decal"` at the top level) and the statement of
//! what a run does differently from the seed (seed-system.md §15), for its log, report and `results.json`.
//!
//! `recipe = "decal"` (the default) is decal's own recipe: every documented seed bug fixed. `recipe = "seed"`
//! switches every documented difference back to the seed's behaviour, by filling in the keys below **where
//! the config does not set them** — explicit keys always win over the preset:
//!
//! | key | `"seed"` sets | seed |
//! |---|---|---|
//! | `[[heads]] selection` | `"seed-loss"` | Q-8: epoch with the lowest single-sample `loss + KL/Z` |
//! | `[[heads]] shuffle` | `false` | BUG-5: the same batches every epoch |
//! | `[features] mode` | `"exact"` | augmented training images through the body every epoch |
//! | `[features] body` | `"seed-bn-drift"` | BUG-7: body in train mode, BatchNorm statistics drift |
//! | `[features] augment_val` (exact mode) | `true` | BUG-6: the heads' validation images augmented every epoch |
//! | `[backbone.train] shuffle`, `augment_val`, `selection` | `false`, `true`, `"val-loss"` | stage 1: BUG-5, BUG-6, Q-8 |
//! | `[eval] profiles` | `["paper", "default"]` | the seed's metric definitions first (§10.5) |
//! | `[eval] spread` | `"seed-se"` | BUG-20: population std (ddof 0) / √n |
//! | `[shift] severity_divisor` (CIFAR-100) | `13` | BUG-1 |
//!
//! Not switched by either recipe: where calibration steps are fitted (`[data] validation`, see
//! [`crate::validation`]): the seed's validation images are safe only on a copy in the official order, and
//! fitting on images the backbone may have trained on needs the explicit `"train-split-unsafe"`.
//!
//! Each recipe is resolved before the config is parsed, so the resolved config (the run's `experiment.json`,
//! `results.json` and `decal run --print-config`) shows every key the preset set.

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// `recipe` at the top of an experiment config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// decal's recipe (every documented seed bug fixed).
    #[default]
    Decal,
    /// The seed's behaviour wherever the config does not say otherwise.
    Seed,
}

impl Recipe {
    /// The name in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Recipe::Decal => "decal",
            Recipe::Seed => "seed",
        }
    }
}

fn table<'a>(t: &'a mut Table, key: &str) -> Option<&'a mut Table> {
    t.get_mut(key).and_then(Value::as_table_mut)
}

fn fill(t: &mut Table, key: &str, value: Value) {
    t.entry(key.to_string()).or_insert(value);
}

/// Applies the recipe named in `config` (a parsed experiment file) to the keys it does not set, and resolves
/// `[backbone.train]` with the dataset's defaults the way `decal train` does
/// (`decal_train::stage1::Stage1Plan::resolve`). Returns the recipe.
pub fn apply(config: &mut Table, path: &std::path::Path) -> Result<Recipe, String> {
    let recipe = match config.get("recipe") {
        None => Recipe::Decal,
        Some(Value::String(s)) if s == "decal" => Recipe::Decal,
        Some(Value::String(s)) if s == "seed" => Recipe::Seed,
        Some(other) => return Err(format!("recipe must be \"seed\" or \"decal\", got {other}")),
    };
    let dataset = config
        .get("data")
        .and_then(|d| d.get("dataset"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if recipe == Recipe::Seed {
        if let Some(Value::Array(heads)) = config.get_mut("heads") {
            for h in heads.iter_mut().filter_map(Value::as_table_mut) {
                fill(h, "selection", Value::String("seed-loss".into()));
                fill(h, "shuffle", Value::Boolean(false));
            }
        }
        let features = config
            .entry("features".to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        if let Some(f) = features.as_table_mut() {
            fill(f, "mode", Value::String("exact".into()));
            fill(f, "body", Value::String("seed-bn-drift".into()));
            // Augmented validation exists only in exact mode (an explicit cached mode keeps its own).
            if f.get("mode").and_then(Value::as_str) == Some("exact") {
                fill(f, "augment_val", Value::Boolean(true));
            }
        }
        if let Some(train) = table(config, "backbone").and_then(|b| table(b, "train")) {
            fill(train, "shuffle", Value::Boolean(false));
            fill(train, "augment_val", Value::Boolean(true));
            fill(train, "selection", Value::String("val-loss".into()));
        }
        let eval = config
            .entry("eval".to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        if let Some(e) = eval.as_table_mut() {
            fill(
                e,
                "profiles",
                Value::Array(vec![
                    Value::String("paper".into()),
                    Value::String("default".into()),
                ]),
            );
            fill(e, "spread", Value::String("seed-se".into()));
        }
        if dataset == "cifar100" {
            if let Some(shift) = table(config, "shift") {
                fill(shift, "severity_divisor", Value::Integer(13));
            }
        }
    }
    if let Some(train) = table(config, "backbone").and_then(|b| b.remove("train")) {
        let Value::Table(train) = train else {
            return Err("[backbone] train must be a table".into());
        };
        let plan = decal_train::stage1::Stage1Plan::resolve(&dataset, train, path)
            .map_err(|e| format!("[backbone.train]: {e}"))?;
        let resolved = Value::try_from(&plan).map_err(|e| format!("[backbone.train]: {e}"))?;
        if let Some(b) = table(config, "backbone") {
            b.insert("train".into(), resolved);
        }
    }
    Ok(recipe)
}

/// How stage 2 gets its features, in one line: every `[features]` key as the run resolved it (mode, body,
/// the number of cached augmented views where the mode has them, storage, batch size).
pub fn stage2_line(config: &crate::experiment::ExperimentConfig) -> String {
    let keys = match serde_json::to_value(&config.features) {
        Ok(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k} = \"{s}\""),
                other => format!("{k} = {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    format!(
        "stage 2: [features] {keys}; recipe = \"{}\"",
        config.recipe.as_str()
    )
}

/// Every difference from the seed's recipe (seed-system.md §4, §6–§10, §15) in effect in `config`, one line
/// each, for the report's notes and `results.json`. `holdout` says whether calibration steps are fitted on a
/// held-out part of the test split (see [`crate::validation`]).
pub fn departures(config: &crate::experiment::ExperimentConfig, holdout: bool) -> Vec<String> {
    use decal_train::features::BodyMode;
    use decal_train::stage2::Selection;
    let mut out = Vec::new();
    let mut say = |s: String| out.push(format!("differs from the seed: {s}"));
    if holdout {
        say("temperature scaling, head-epoch selection and head temperatures are fitted on a held-out part of the test split (seed: the validation part of its own training split)".into());
    }
    if config.seeds.len() != 10 && !config.heads.is_empty() {
        say(format!(
            "{} stage-2 seeds (seed: 10, seeds 0..9)",
            config.seeds.len()
        ));
    }
    // On feature files the images, the body and the training views are the user's, not decal's.
    let images = config.backbone.features.is_none();
    match config.features.mode.as_str() {
        _ if !images => {}
        "exact" => {}
        "cached" | "unaugmented" => say(format!("stage 2 trains on features of un-augmented training images, computed once ([features] mode = \"{}\"; seed: freshly augmented images through the body every epoch)", config.features.mode)),
        "augmented" => say(format!("stage 2 trains on cached features of A = {} augmented views per training image, one view per image per epoch ([features] mode = \"augmented\"; seed: freshly augmented images through the body every epoch)", config.features.views)),
        other => say(format!("stage 2 trains on cached features ([features] mode = \"{other}\"; seed: freshly augmented images through the body every epoch)")),
    }
    if images
        && config.features.mode == "augmented"
        && config.features.views_precision != decal_train::precision::Precision::Fp32
    {
        say(format!("the augmented training views are extracted under {} autocast ([features] views_precision; seed: float32); validation, test, OOD and shift features stay float32", config.features.views_precision.name()));
    }
    if images && config.features.body != BodyMode::SeedBnDrift {
        say("the frozen body runs in eval mode (seed: train mode, BatchNorm statistics drifting, BUG-7)".into());
    }
    if images && !config.heads.is_empty() && !config.features.augment_val {
        say(
            "stage-2 validation images are un-augmented (seed: the training augmentation, BUG-6)"
                .into(),
        );
    }
    for h in &config.heads {
        if h.selection != Selection::SeedLoss {
            say(format!("head {} keeps the epoch with the lowest validation NLL of its predictive (seed: single-sample loss + KL/Z, Q-8)", h.name));
        }
        if h.shuffle {
            say(format!(
                "head {} reshuffles its training data every epoch (seed: one fixed order, BUG-5)",
                h.name
            ));
        }
        if (h.epochs, h.batch_size) != (40, 256) || h.lr != 1e-4 {
            say(format!(
                "head {}: {} epochs, batch {}, lr {} (seed: 40, 256, 1e-4)",
                h.name, h.epochs, h.batch_size, h.lr
            ));
        }
    }
    if let Some(plan) = &config.backbone.train {
        if plan.shuffle {
            say("stage 1 reshuffles every epoch (seed: fixed order, BUG-5)".into());
        }
        if !plan.augment_val {
            say("stage-1 validation images are un-augmented (seed: augmented, BUG-6)".into());
        }
        if plan.selection != decal_train::stage1::Selection::ValLoss {
            say("stage 1 keeps the epoch with the lowest validation NLL (seed: validation loss, Q-8)".into());
        }
    }
    if config.eval.profiles.first().map(String::as_str) != Some("paper") {
        say(format!(
            "the primary metric profile is \"{}\" (seed: the paper's definitions, profile \"paper\", reported with the suffix _paper)",
            config.eval.profiles.first().map(String::as_str).unwrap_or("")
        ));
    }
    let spread = match config.eval.spread {
        decal_report::table::Spread::Std => Some("the sample standard deviation (ddof = 1)"),
        decal_report::table::Spread::Se => Some("the standard error with ddof = 1"),
        decal_report::table::Spread::SeedSe => None,
    };
    if let Some(spread) = spread {
        say(format!(
            "± in tables is {spread} over seeds (seed: population std, ddof = 0, / √n, BUG-20)"
        ));
    }
    if config.data.dataset == "cifar100"
        && config
            .shift
            .as_ref()
            .is_some_and(|s| s.severity_divisor.is_none())
    {
        say("per-severity shift means divide by the number of corruptions evaluated (seed: by 13 on CIFAR-100, BUG-1)".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::experiment::ExperimentConfig;
    use decal_train::features::BodyMode;

    fn read(text: &str) -> ExperimentConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        ExperimentConfig::read(&path).unwrap()
    }

    const BASE: &str = "name = \"x\"\n[data]\ndataset = \"cifar10\"\ndir = \"d\"\n[backbone]\n\
                        checkpoint = \"c\"\n[[heads]]\nname = \"TST\"\nkind = \"tst\"\n";

    #[test]
    fn the_seed_recipe_sets_exact_mode_with_drift_and_augmented_validation() {
        let c = read(&format!("recipe = \"seed\"\n{BASE}"));
        let f = &c.features;
        assert_eq!(
            (f.mode.as_str(), f.body, f.augment_val),
            ("exact", BodyMode::SeedBnDrift, true)
        );
        assert!(
            !super::departures(&c, false)
                .iter()
                .any(|d| d.contains("BUG-6")),
            "{:?}",
            super::departures(&c, false)
        );
        // An explicit cached mode keeps un-augmented validation (augment_val needs exact mode).
        let c = read(&format!(
            "recipe = \"seed\"\n{BASE}[features]\nmode = \"augmented\"\nbody = \"frozen\"\n"
        ));
        assert!(!c.features.augment_val);
        assert!(super::departures(&c, false)
            .iter()
            .any(|d| d.contains("BUG-6")));
        // decal's recipe: un-augmented validation, said as a departure.
        let c = read(BASE);
        assert!(!c.features.augment_val);
        assert!(super::departures(&c, false)
            .iter()
            .any(|d| d.contains("stage-2 validation images are un-augmented")));
    }
}
