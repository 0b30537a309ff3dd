//! The unit store: one directory per unit under `<run>/units/<id>/`, a completion record written last, and
//! freshness as data (fresh, or dirty with a reason).
//!
//! A unit's directory holds only what the unit wrote. Its completion record `done.json` lists every output
//! file with its size and SHA-256, the outcome (`done`, or `skipped` with the reason a unit decided), the
//! warnings, a small summary, provenance and timings; it is written atomically after every output, so a
//! killed unit has no record and is recomputed (or resumed, for kinds that resume). `plan.json` beside
//! `units/` is the last plan: `decal unit run` reads a unit's spec from it, and the next plan uses it to say
//! what changed in a unit whose id changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Plan, Unit, UnitId};

/// File name of a unit's completion record.
pub const RECORD: &str = "done.json";
/// File name of the last plan, in the run directory.
pub const PLAN_FILE: &str = "plan.json";

/// Whether a unit can be reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Freshness {
    /// Its record is complete, its outputs intact and its inputs fresh.
    Fresh,
    /// It must run; why.
    Dirty(String),
}

impl Freshness {
    /// True when fresh.
    pub fn is_fresh(&self) -> bool {
        matches!(self, Freshness::Fresh)
    }

    /// The reason it is dirty.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Freshness::Fresh => None,
            Freshness::Dirty(r) => Some(r),
        }
    }
}

/// What a finished unit decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// It produced its outputs.
    Done,
    /// It decided not to produce them (e.g. a temperature fit without a finite optimum); the report says why.
    Skipped {
        /// Why.
        reason: String,
    },
    /// It produced its outputs without some of its inputs (the report with `--keep-going`).
    Partial {
        /// The inputs it went without.
        missing: Vec<UnitId>,
    },
}

/// One output file of a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content.
    pub sha256: String,
}

/// A unit's completion record (`done.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRecord {
    /// The unit's id (checked against its directory).
    pub id: UnitId,
    /// Its kind.
    pub kind: String,
    /// Its name in the plan that ran it.
    pub name: String,
    /// What it decided.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Warnings for the report.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// A small summary for logs and the report (e.g. a head's best epoch, a fitted temperature).
    #[serde(default)]
    pub summary: Value,
    /// Every output file (path relative to the unit directory).
    pub outputs: BTreeMap<String, OutputFile>,
    /// Seconds the unit ran.
    pub seconds: f64,
    /// When it finished (seconds since the Unix epoch).
    pub finished_unix: u64,
    /// decal version, libtorch, host.
    pub provenance: decal_core::Provenance,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory of the store could not be read or written.
    #[error("{path}: {problem}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io {
        path: path.to_path_buf(),
        problem: decal_core::fsutil::io_note(path, &e),
    }
}

/// A run's unit store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store of the run directory `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    /// The run directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A unit's directory.
    pub fn unit_dir(&self, id: &str) -> PathBuf {
        self.root.join("units").join(id)
    }

    /// The last plan written to this store, if any (an unreadable one counts as none).
    pub fn last_plan(&self) -> Option<Plan> {
        let text = std::fs::read_to_string(self.root.join(PLAN_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the plan (atomically) for `decal unit run` and the next plan's reasons.
    pub fn write_plan(&self, plan: &Plan) -> Result<(), StoreError> {
        let path = self.root.join(PLAN_FILE);
        decal_core::write_json_atomic(&path, plan).map_err(|e| StoreError::Io {
            problem: e.to_string(),
            path,
        })
    }

    /// A unit's completion record, if it has a readable one for this id.
    pub fn record(&self, id: &str) -> Option<CompletionRecord> {
        let text = std::fs::read_to_string(self.unit_dir(id).join(RECORD)).ok()?;
        let record: CompletionRecord = serde_json::from_str(&text).ok()?;
        (record.id == id).then_some(record)
    }

    /// Prepares a unit's directory before it runs: kept as it is for a kind that resumes, emptied otherwise
    /// (what an interrupted attempt left is never mistaken for an output). The old record goes first.
    pub fn begin(&self, unit: &Unit, resumes: bool) -> Result<PathBuf, StoreError> {
        let dir = self.unit_dir(&unit.id);
        let record = dir.join(RECORD);
        if record.exists() {
            std::fs::remove_file(&record).map_err(io(&record))?;
        }
        if dir.exists() && !resumes {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(dir)
    }

    /// Writes a unit's completion record, last: checksums every file in its directory.
    pub fn finish(
        &self,
        unit: &Unit,
        outcome: Outcome,
        warnings: Vec<String>,
        summary: Value,
        seconds: f64,
    ) -> Result<CompletionRecord, StoreError> {
        let dir = self.unit_dir(&unit.id);
        let outputs = checksum_tree(&dir)?;
        let record = CompletionRecord {
            id: unit.id.clone(),
            kind: unit.kind().to_string(),
            name: unit.name.clone(),
            outcome,
            warnings,
            summary,
            outputs,
            seconds,
            finished_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            provenance: decal_core::Provenance::capture(),
        };
        let path = dir.join(RECORD);
        decal_core::write_json_atomic(&path, &record).map_err(|e| StoreError::Io {
            problem: e.to_string(),
            path,
        })?;
        Ok(record)
    }

    /// Whether one unit's own record and outputs are intact (inputs not considered).
    pub fn check_unit(&self, unit: &Unit) -> Freshness {
        let dir = self.unit_dir(&unit.id);
        if !dir.exists() {
            return Freshness::Dirty("never run".into());
        }
        if !dir.join(RECORD).exists() {
            return Freshness::Dirty("interrupted: its directory has no completion record".into());
        }
        let Some(record) = self.record(&unit.id) else {
            return Freshness::Dirty(format!("completion record {RECORD} is damaged"));
        };
        for (rel, want) in &record.outputs {
            let path = dir.join(rel);
            match std::fs::metadata(&path) {
                Err(_) => return Freshness::Dirty(format!("output {rel} is missing")),
                Ok(m) if m.len() != want.bytes => {
                    return Freshness::Dirty(format!(
                        "output {rel} is damaged ({} bytes, recorded {})",
                        m.len(),
                        want.bytes
                    ))
                }
                Ok(_) => {}
            }
            match decal_core::sha256_file(&path) {
                Ok(sha) if sha == want.sha256 => {}
                _ => return Freshness::Dirty(format!("output {rel} is damaged (checksum)")),
            }
        }
        Freshness::Fresh
    }

    /// Freshness of every unit of `plan`, inputs first: a unit is fresh iff it is intact, every input is
    /// fresh, and (for a partial unit) every input it went without is still unavailable. A unit new to this
    /// plan whose name was in the last plan says what changed.
    pub fn freshness(&self, plan: &Plan) -> BTreeMap<UnitId, Freshness> {
        let last = self.last_plan();
        let mut out: BTreeMap<UnitId, Freshness> = BTreeMap::new();
        for unit in &plan.units {
            let mut f = self.check_unit(unit);
            if f.is_fresh() {
                f = inputs_freshness(plan, unit, &out, self);
            } else if let (Freshness::Dirty(r), Some(old)) =
                (&f, last.as_ref().and_then(|p| p.by_name(&unit.name)))
            {
                if old.id != unit.id && r == "never run" {
                    f = Freshness::Dirty(what_changed(old, unit, plan));
                }
            }
            out.insert(unit.id.clone(), f);
        }
        out
    }
}

fn inputs_freshness(
    plan: &Plan,
    unit: &Unit,
    known: &BTreeMap<UnitId, Freshness>,
    store: &Store,
) -> Freshness {
    for dep in unit.deps.values() {
        if !known.get(dep).is_some_and(Freshness::is_fresh) {
            let name = plan.find(dep).map_or("?", |u| u.name.as_str());
            return Freshness::Dirty(format!("input {name} is dirty"));
        }
    }
    if let Some(CompletionRecord {
        outcome: Outcome::Partial { missing },
        ..
    }) = store.record(&unit.id)
    {
        // Every input is fresh now (checked above): the ones it went without have been computed since.
        if !missing.is_empty() {
            return Freshness::Dirty(format!(
                "it ran without {} input(s) that are complete now",
                missing.len()
            ));
        }
    }
    Freshness::Fresh
}

/// Why a unit's id changed since the last plan: the spec keys that differ, or the inputs that changed.
fn what_changed(old: &Unit, new: &Unit, plan: &Plan) -> String {
    let (a, b) = (
        serde_json::to_value(&old.spec).unwrap_or(Value::Null),
        serde_json::to_value(&new.spec).unwrap_or(Value::Null),
    );
    let mut keys = Vec::new();
    diff_keys("", &a, &b, &mut keys);
    if !keys.is_empty() {
        keys.truncate(6);
        return format!(
            "its settings changed since the last plan: {}",
            keys.join(", ")
        );
    }
    let mut inputs = Vec::new();
    for (role, id) in &new.deps {
        if old.deps.get(role) != Some(id) {
            inputs.push(plan.find(id).map_or(role.clone(), |u| u.name.clone()));
        }
    }
    if inputs.is_empty() {
        "its inputs changed since the last plan".into()
    } else {
        format!(
            "its inputs changed since the last plan: {}",
            inputs.join(", ")
        )
    }
}

fn diff_keys(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff_keys(&p, u, v, out),
                    _ => out.push(p),
                }
            }
        }
        _ if a != b => out.push(if prefix.is_empty() {
            "kind".into()
        } else {
            prefix.to_string()
        }),
        _ => {}
    }
}

/// Size and SHA-256 of every file under `dir` except the record, by relative path (`/`-separated).
fn checksum_tree(dir: &Path) -> Result<BTreeMap<String, OutputFile>, StoreError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let path = entry.map_err(io(&d))?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            if rel == RECORD {
                continue;
            }
            let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
            let sha256 = decal_core::sha256_file(&path).map_err(|e| StoreError::Io {
                path: path.clone(),
                problem: e.to_string(),
            })?;
            out.insert(rel, OutputFile { bytes, sha256 });
        }
    }
    Ok(out)
}
