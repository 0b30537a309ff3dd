//! `decal run` as a plan of units (issue #11), end to end on the bundled quickstart data (real Fashion-MNIST /
//! MNIST subsets): `--plan --json` shows the whole DAG before anything runs; after a run every unit is fresh;
//! an edit makes exactly the edited units and their dependents dirty (data-driven: config edit in, expected
//! dirty units out); a damaged or interrupted unit is detected, named and recomputed; `--jobs 2` and the
//! Slurm executor (on the real single-node cluster of `scripts/slurm-single-node.sh`) give results identical
//! to the serial run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A SKIP line on the process's stderr (libtest captures `eprintln!` of passing tests).
fn skip(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {message}");
}

fn have_data() -> bool {
    let ok = repo_root().join("data/quickstart/fashion-mnist").exists();
    if !ok {
        skip("bundled data/quickstart not present");
    }
    ok
}

struct Edit<'a> {
    seeds: &'a str,
    tst_epochs: usize,
    extra_ood: bool,
}

const BASE: Edit<'static> = Edit {
    seeds: "[0, 1]",
    tst_epochs: 2,
    extra_ood: false,
};

fn write_config(dir: &Path, edit: &Edit<'_>) -> PathBuf {
    let data = repo_root().join("data/quickstart");
    let extra = if edit.extra_ood {
        format!(
            "[[ood]]\nname = \"mnist-train\"\ndataset = \"mnist\"\ndir = \"{}/mnist\"\nsplit = \"train\"\nallow_subset = true\nlimit = 200\n",
            data.display()
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"
name = "plan-tiny"
seeds = {seeds}
temperature_scaling = true

[data]
dataset = "fashion-mnist"
dir = "{data}/fashion-mnist"
allow_subset = true
limit_train = 1000
limit_val = 300
limit_test = 300

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
epochs = {tst_epochs}
lr = 0.001

[[heads]]
name = "V-TST"
kind = "vtst"
latent_dim = 16
epochs = 2
lr = 0.001
eval_samples = [1, 4]

[[ood]]
name = "mnist"
dataset = "mnist"
dir = "{data}/mnist"
allow_subset = true
limit = 200
{extra}
[eval]
bootstrap = 20
"#,
        seeds = edit.seeds,
        tst_epochs = edit.tst_epochs,
        data = data.display(),
    );
    let path = dir.join("experiment.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn decal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .unwrap()
}

fn run(config: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "run",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
    ];
    args.extend_from_slice(extra);
    let o = decal(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "decal run {extra:?} failed:\n{stderr}");
    stderr
}

fn plan(config: &Path, out: &Path) -> Value {
    let o = decal(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--plan",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn names_where(plan: &Value, status: &str) -> BTreeSet<String> {
    plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["status"] == status)
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect()
}

fn reason(plan: &Value, name: &str) -> String {
    plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .map(|u| u["reason"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no unit {name}"))
}

#[test]
fn plan_shows_the_dag_first_and_edits_dirty_only_their_units() {
    if !have_data() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let config = write_config(tmp.path(), &BASE);

    // Before anything runs: the whole DAG, every unit dirty ("never run"), every input a unit of the plan,
    // and nothing written.
    let before = plan(&config, &out);
    assert_eq!(before["version"], 1);
    let units = before["units"].as_array().unwrap();
    let ids: BTreeSet<&str> = units.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), units.len(), "ids are unique");
    for u in units {
        assert_eq!(u["id"].as_str().unwrap().len(), 64);
        assert_eq!(u["status"], "dirty");
        assert_eq!(u["reason"], "never run");
        for d in u["deps"].as_array().unwrap() {
            assert!(ids.contains(d.as_str().unwrap()), "{u}: unknown input {d}");
        }
    }
    let kinds: BTreeSet<&str> = units.iter().map(|u| u["kind"].as_str().unwrap()).collect();
    for k in [
        "split",
        "backbone",
        "features",
        "head",
        "temperature",
        "eval",
        "ood",
        "report",
    ] {
        assert!(kinds.contains(k), "no {k} unit in {kinds:?}");
    }
    assert!(!out.exists(), "--plan wrote {}", out.display());

    run(&config, &out, &[]);
    let after = plan(&config, &out);
    assert!(names_where(&after, "dirty").is_empty(), "{after}");
    // The same plan again: the same ids.
    assert_eq!(before["units"].as_array().unwrap().len(), units.len());

    // One head's setting: only that head's units and what depends on them.
    let edited = write_config(
        tmp.path(),
        &Edit {
            tst_epochs: 3,
            ..BASE
        },
    );
    let dirty = names_where(&plan(&edited, &out), "dirty");
    let expected_prefixes = [
        "head/tst/",
        "temperature/ts-tst/",
        "eval/tst/",
        "eval/ts-tst/",
        "ood/tst/",
        "ood/ts-tst/",
    ];
    for name in &dirty {
        assert!(
            name == "report" || expected_prefixes.iter().any(|p| name.starts_with(p)),
            "{name} should stay fresh when only TST's epochs change; dirty: {dirty:?}"
        );
    }
    assert!(
        dirty.contains("head/tst/seed-0") && dirty.contains("head/tst/seed-1"),
        "{dirty:?}"
    );
    assert!(!dirty.iter().any(|n| n.contains("v-tst")), "{dirty:?}");

    // A new seed: only that seed's units (+ the report).
    let edited = write_config(
        tmp.path(),
        &Edit {
            seeds: "[0, 1, 2]",
            ..BASE
        },
    );
    let dirty = names_where(&plan(&edited, &out), "dirty");
    for name in &dirty {
        assert!(
            name == "report" || name.contains("seed-2"),
            "{name}: {dirty:?}"
        );
    }
    assert!(dirty.contains("head/tst/seed-2"), "{dirty:?}");

    // A new OOD set: its features and its scoring units, the OOD figures pooled over every set (they
    // depend on all of them), and the report; no eval, head or other OOD set's unit.
    let edited = write_config(
        tmp.path(),
        &Edit {
            extra_ood: true,
            ..BASE
        },
    );
    let dirty = names_where(&plan(&edited, &out), "dirty");
    for name in &dirty {
        assert!(
            name == "report" || name.contains("mnist-train") || name.ends_with("/pooled"),
            "{name}: {dirty:?}"
        );
    }
    assert!(dirty.contains("features/ood-mnist-train"), "{dirty:?}");
    assert!(
        !dirty
            .iter()
            .any(|n| n.starts_with("eval/") || n.ends_with("/mnist")),
        "{dirty:?}"
    );
}

#[test]
fn damaged_and_interrupted_units_are_named_and_recomputed_identically() {
    if !have_data() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let config = write_config(tmp.path(), &BASE);
    run(&config, &out, &[]);
    let records = std::fs::read(out.join("metrics.jsonl")).unwrap();
    let p = plan(&config, &out);
    let id_of = |name: &str| -> String {
        p["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Damage one output of a head: that head is dirty, naming the file; its dependents are dirty too.
    let head_dir = out.join("units").join(id_of("head/tst/seed-0"));
    let victim = std::fs::read_dir(&head_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file() && p.file_name().unwrap() != "done.json")
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&victim, &bytes).unwrap();
    // Interrupt another: its completion record is gone.
    std::fs::remove_file(
        out.join("units")
            .join(id_of("eval/v-tst-m-4/seed-1"))
            .join("done.json"),
    )
    .unwrap();
    let p2 = plan(&config, &out);
    let r = reason(&p2, "head/tst/seed-0");
    assert!(
        r.contains("damaged") && r.contains(victim.file_name().unwrap().to_str().unwrap()),
        "{r}"
    );
    assert!(reason(&p2, "eval/tst/seed-0").contains("input head/tst/seed-0 is dirty"));
    assert!(reason(&p2, "eval/v-tst-m-4/seed-1").contains("interrupted"));
    assert!(names_where(&p2, "fresh").contains("head/tst/seed-1"));
    run(&config, &out, &[]);
    assert!(names_where(&plan(&config, &out), "dirty").is_empty());
    assert_eq!(
        std::fs::read(out.join("metrics.jsonl")).unwrap(),
        records,
        "recomputed units changed the records"
    );
}

#[test]
fn jobs_two_gives_the_serial_results() {
    if !have_data() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &BASE);
    let (serial, parallel) = (tmp.path().join("serial"), tmp.path().join("jobs2"));
    run(&config, &serial, &[]);
    let log = run(&config, &parallel, &["--jobs", "2"]);
    assert!(log.contains("started"), "{log}");
    for f in ["metrics.jsonl", "metrics.csv"] {
        assert_eq!(
            std::fs::read(serial.join(f)).unwrap(),
            std::fs::read(parallel.join(f)).unwrap(),
            "{f} differs between the serial run and --jobs 2"
        );
    }
}

#[test]
fn slurm_gives_the_serial_results() {
    if !have_data() {
        return;
    }
    let script = repo_root().join("scripts/slurm-single-node.sh");
    let up = Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .unwrap();
    if !up.status.success() {
        let why =
            String::from_utf8_lossy(&up.stdout).into_owned() + &String::from_utf8_lossy(&up.stderr);
        assert!(
            std::env::var("DECAL_REQUIRE_SLURM").as_deref() != Ok("1"),
            "DECAL_REQUIRE_SLURM=1 but the single-node Slurm cluster did not start: {why}"
        );
        skip(&format!(
            "slurm_gives_the_serial_results: no Slurm cluster: {why}"
        ));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &BASE);
    let (serial, slurm) = (tmp.path().join("serial"), tmp.path().join("slurm"));
    run(&config, &serial, &[]);
    run(&config, &slurm, &["--executor", "slurm", "--wait"]);
    for f in ["metrics.jsonl", "metrics.csv"] {
        assert_eq!(
            std::fs::read(serial.join(f)).unwrap(),
            std::fs::read(slurm.join(f)).unwrap(),
            "{f} differs between the serial run and Slurm"
        );
    }
    // A later local run finds everything fresh and only reports.
    let again = run(&config, &slurm, &[]);
    assert!(again.contains("0 to run"), "{again}");
}
