//! An experiment as a plan of units (issue #11): a DAG of typed units whose ids are known before anything
//! runs.
//!
//! A [`Unit`] is one piece of work with one output directory in the [`store`]: loading a split, training or
//! importing the backbone, extracting one split's features, training one head × seed, fitting one
//! temperature, scoring one method on one split / OOD set / corruption, reducing the shift sweep, writing the
//! report. Its id is the SHA-256 of its kind, [`SCHEMA_VERSION`], its resolved spec and its inputs' ids —
//! nothing it produces — so `decal run --plan` shows the whole DAG, with what is fresh and what is dirty and
//! why, before any work (the model is cargo's unit graph and fingerprints).
//!
//! Invariants:
//! - a unit writes only its own directory `<run>/units/<id>/`; its completion record (`done.json`, with
//!   every output's SHA-256) is written last and atomically;
//! - a unit is fresh iff its record exists, every recorded output still has its checksum, and every input
//!   is fresh; anything else is dirty with a reason ([`store::Freshness`]);
//! - a change of spec or input gives a new id, so a stale output is never reused: it is simply not found;
//! - executing a unit depends only on its spec and its inputs' outputs, so the serial executor, `--jobs N`
//!   (one process per unit, `decal unit run`) and Slurm give identical results.

pub mod build;
pub mod exec;
pub mod store;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::units::UnitSpec;

/// Version of the unit schema: part of every id, so a change of what units mean recomputes them.
pub const SCHEMA_VERSION: u32 = 1;

/// A unit's id: 64 lowercase hex digits (SHA-256).
pub type UnitId = String;

/// The first 12 hex digits of an id (what `--plan` prints).
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Which machine resource a unit needs (the executors run at most one device unit per device at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    /// Small work: CPU only, any number in parallel.
    Cpu,
    /// Work on the run's device (backbone training, feature extraction): one at a time per device.
    Device,
}

/// One unit of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// SHA-256 of kind, schema version, spec and the inputs' ids.
    pub id: UnitId,
    /// Human-readable name, unique in the plan (e.g. `head/tst/seed-0`); not part of the id.
    pub name: String,
    /// What to do, fully resolved.
    pub spec: UnitSpec,
    /// Inputs by role (e.g. `"backbone"`, `"train"`, `"fit"`), each the id of another unit of the plan.
    pub deps: BTreeMap<String, UnitId>,
    /// What the unit needs to run.
    pub resource: Resource,
}

impl Unit {
    /// The unit's kind (`split`, `backbone`, `features`, `head`, …).
    pub fn kind(&self) -> &'static str {
        self.spec.kind()
    }

    /// The id of the input in `role`; a missing role is a bug of the planner, reported as an error.
    pub fn dep(&self, role: &str) -> Result<&UnitId, crate::units::UnitError> {
        self.deps
            .get(role)
            .ok_or_else(|| crate::units::UnitError::Input {
                unit: self.name.clone(),
                problem: format!("the plan gives it no {role:?} input"),
            })
    }
}

/// Computes a unit's id.
pub fn unit_id(spec: &UnitSpec, deps: &BTreeMap<String, UnitId>) -> UnitId {
    let value = json!({
        "kind": spec.kind(), "schema": SCHEMA_VERSION, "spec": spec, "deps": deps,
    });
    decal_core::sha256_bytes(value.to_string().as_bytes())
}

/// Errors of planning: one line naming the config file's key (or the input) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The config is invalid.
    #[error("{key}: {problem}")]
    Config {
        /// The config key (e.g. `heads[1].latent_dim`).
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// The whole-config checks failed (their message already names the key).
    #[error("{0}")]
    Invalid(String),
    /// An input (data directory, checkpoint, corruption folder) cannot be read at plan time.
    #[error("{what}: {problem}")]
    Input {
        /// Which input.
        what: String,
        /// What is wrong.
        problem: String,
    },
    /// Two units got the same name (a planner bug, reported rather than hidden).
    #[error("two units are named {0:?}")]
    DuplicateName(String),
}

/// The plan: units in a topological order (every unit after its inputs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Every unit, inputs first.
    pub units: Vec<Unit>,
    /// What the planner left out, and why (shown by `--plan`, carried into the report).
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Plan {
    /// Adds a unit (its inputs must already be in the plan) and returns its id.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        spec: UnitSpec,
        deps: BTreeMap<String, UnitId>,
        resource: Resource,
    ) -> Result<UnitId, PlanError> {
        let name = name.into();
        if self.units.iter().any(|u| u.name == name) {
            return Err(PlanError::DuplicateName(name));
        }
        let id = unit_id(&spec, &deps);
        self.units.push(Unit {
            id: id.clone(),
            name,
            spec,
            deps,
            resource,
        });
        Ok(id)
    }

    /// Adds a unit that several others may share: if an identical unit (same spec and inputs, so the same id)
    /// is already planned, returns its id; else adds it under `name` (or, if that name is taken by a unit
    /// with other settings, `name-2`, `name-3`, …).
    pub fn add_shared(
        &mut self,
        name: impl Into<String>,
        spec: UnitSpec,
        deps: BTreeMap<String, UnitId>,
        resource: Resource,
    ) -> Result<UnitId, PlanError> {
        let id = unit_id(&spec, &deps);
        if self.units.iter().any(|u| u.id == id) {
            return Ok(id);
        }
        let base = name.into();
        let name = (1..)
            .map(|n| match n {
                1 => base.clone(),
                n => format!("{base}-{n}"),
            })
            .find(|candidate| self.by_name(candidate).is_none())
            .expect("an unused name");
        self.add(name, spec, deps, resource)
    }

    /// The unit with this id (or unique id prefix of at least 8 hex digits).
    pub fn find(&self, id: &str) -> Option<&Unit> {
        if let Some(u) = self.units.iter().find(|u| u.id == id) {
            return Some(u);
        }
        if id.len() < 8 {
            return None;
        }
        let mut hits = self.units.iter().filter(|u| u.id.starts_with(id));
        match (hits.next(), hits.next()) {
            (Some(u), None) => Some(u),
            _ => None,
        }
    }

    /// The unit with this name.
    pub fn by_name(&self, name: &str) -> Option<&Unit> {
        self.units.iter().find(|u| u.name == name)
    }

    /// Each unit's level: 0 without inputs, else one more than its deepest input.
    pub fn levels(&self) -> BTreeMap<UnitId, usize> {
        let mut level: BTreeMap<UnitId, usize> = BTreeMap::new();
        for u in &self.units {
            let l = u
                .deps
                .values()
                .filter_map(|d| level.get(d))
                .map(|l| l + 1)
                .max()
                .unwrap_or(0);
            level.insert(u.id.clone(), l);
        }
        level
    }

    /// Every unit that depends, directly or not, on one of `roots` (the roots excluded).
    pub fn dependents(&self, roots: &[UnitId]) -> Vec<UnitId> {
        let mut hit: Vec<UnitId> = roots.to_vec();
        let mut out = Vec::new();
        for u in &self.units {
            if u.deps.values().any(|d| hit.contains(d)) {
                hit.push(u.id.clone());
                out.push(u.id.clone());
            }
        }
        out
    }
}

/// `--plan --json`: `{"version": 1, "units": [{"id", "kind", "name", "deps", "status", "reason"}]}`.
pub fn plan_json(plan: &Plan, freshness: &BTreeMap<UnitId, store::Freshness>) -> Value {
    let units: Vec<Value> = plan
        .units
        .iter()
        .map(|u| {
            let f = freshness.get(&u.id);
            json!({
                "id": u.id, "kind": u.kind(), "name": u.name,
                "deps": u.deps.values().collect::<Vec<_>>(),
                "status": if f.is_some_and(|f| f.is_fresh()) { "fresh" } else { "dirty" },
                "reason": f.and_then(|f| f.reason()),
            })
        })
        .collect();
    json!({"version": 1, "units": units, "warnings": plan.warnings})
}

/// `--plan`: one line per unit (short id, kind, name, inputs, fresh or dirty and why) and a count.
pub fn plan_text(plan: &Plan, freshness: &BTreeMap<UnitId, store::Freshness>) -> String {
    let names: BTreeMap<&str, &str> = plan
        .units
        .iter()
        .map(|u| (u.id.as_str(), u.name.as_str()))
        .collect();
    let mut out = String::new();
    let mut dirty = 0;
    for u in &plan.units {
        let f = freshness.get(&u.id);
        let status = match f.and_then(|f| f.reason()) {
            None if f.is_some() => "fresh".to_string(),
            reason => {
                dirty += 1;
                format!("dirty: {}", reason.unwrap_or("not checked"))
            }
        };
        let mut deps: Vec<&str> = u
            .deps
            .values()
            .map(|d| names.get(d.as_str()).copied().unwrap_or("?"))
            .collect();
        deps.dedup();
        let more = deps.len().saturating_sub(4);
        deps.truncate(4);
        let more = if more > 0 {
            format!(" (+{more} more)")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{}  {:<12} {:<40} {}{}",
            short(&u.id),
            u.kind(),
            u.name,
            status,
            if deps.is_empty() {
                String::new()
            } else {
                format!("  <- {}{more}", deps.join(", "))
            }
        );
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(
        out,
        "{} units: {} fresh, {dirty} dirty",
        plan.units.len(),
        plan.units.len() - dirty
    );
    out
}
