//! Hostile-size harness shared by the `hostile_sizes` tests (decal-data, decal-models and decal-pickle include
//! this file with `#[path]`): a case runs in a child process — this test binary re-executed with
//! `--exact <case>` — so that its peak resident memory (`VmHWM` of `/proc/self/status`) is its own, and,
//! when the test binary has no libtorch mapped, under an address-space limit (`ulimit -v`) so that an
//! allocation the invariant forbids fails in the child instead of swapping the machine.

#![allow(dead_code)]

use std::process::Command;

/// Peak memory a hostile case may reach: 250 MiB.
pub const MAX_HWM_KIB: u64 = 250 * 1024;

const CHILD_ENV: &str = "DECAL_HOSTILE_CASE";

/// The outcome of a case as seen by the parent.
#[derive(Debug)]
pub struct Outcome {
    /// The reader's error message (`Display`), or `None` when it succeeded.
    pub error: Option<String>,
    /// Peak resident set of the child, KiB.
    pub hwm_kib: u64,
}

fn hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// Runs `case` (the body of the test named `name`) in a child and returns what it reported. In the child
/// itself this runs `case`, prints the outcome and returns `None`. `limit_address_space`: run the child
/// under `ulimit -v` of 2 GiB (not for test binaries that map libtorch).
pub fn run_case(
    name: &str,
    limit_address_space: bool,
    case: impl FnOnce() -> Result<(), String>,
) -> Option<Outcome> {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        let result = case();
        let msg = match result {
            Ok(()) => "HOSTILE-OK".to_string(),
            Err(e) => format!("HOSTILE-ERR:{}", e.replace('\n', "\\n")),
        };
        println!("{msg}");
        println!("HOSTILE-HWM:{}", hwm_kib());
        return None;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = if limit_address_space {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("ulimit -v 2097152 && exec \"$0\" \"$@\"")
            .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name);
    let out = cmd.output().expect("spawn the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "case {name} did not end normally ({}): stdout {stdout}\nstderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let error = stdout
        .lines()
        .find_map(|l| l.split_once("HOSTILE-ERR:").map(|(_, m)| m))
        .map(str::to_string);
    let hwm_kib = stdout
        .lines()
        .find_map(|l| l.split_once("HOSTILE-HWM:").map(|(_, m)| m))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("case {name} reported nothing: {stdout}"));
    Some(Outcome { error, hwm_kib })
}

/// Asserts the contract of a hostile case: a one-line error that contains every string of `needles`
/// (the file name and the problem), reached with less than [`MAX_HWM_KIB`] of peak memory.
pub fn assert_refused(
    name: &str,
    limit_address_space: bool,
    needles: &[&str],
    case: impl FnOnce() -> Result<(), String>,
) {
    let Some(o) = run_case(name, limit_address_space, case) else {
        return;
    };
    eprintln!("{name}: peak RSS {} KiB, error {:?}", o.hwm_kib, o.error);
    let msg = o
        .error
        .unwrap_or_else(|| panic!("{name}: the hostile input was accepted"));
    assert!(!msg.contains("\\n"), "{name}: error is not one line: {msg}");
    for n in needles {
        assert!(msg.contains(n), "{name}: error lacks {n:?}: {msg}");
    }
    assert!(
        o.hwm_kib < MAX_HWM_KIB,
        "{name}: peak RSS {} KiB exceeds {MAX_HWM_KIB} KiB",
        o.hwm_kib
    );
}
