//! FATE's standalone engine on the bench's workload, in the same run (`eggroll bench
//! --vs-fate`): the script `bench_fate.py` run by the Python of the project's FATE venv.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The script the FATE venv's Python runs.
const SCRIPT: &str = include_str!("bench_fate.py");

/// Where the project's FATE venv keeps its Python, relative to the repository.
const VENV_PYTHON: &str = ".venv-fate/bin/python";

/// The FATE venv's Python: `EGGROLL_FATE_PYTHON`, else `.venv-fate/bin/python` in the current
/// directory, else in the repository the running binary was built in (`target/release/..`).
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EGGROLL_FATE_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let here = Path::new(VENV_PYTHON).to_path_buf();
    if here.exists() {
        return Some(here);
    }
    let exe = std::env::current_exe().ok()?;
    let repo = exe.parent()?.parent()?.parent()?;
    Some(repo.join(VENV_PYTHON)).filter(|p| p.exists())
}

/// Runs the bench's ops on FATE standalone with `python`; the time of each op by name.
pub fn run(
    python: &Path,
    rows: u64,
    value_bytes: usize,
    partitions: u32,
    data_dir: &Path,
) -> Result<HashMap<String, Duration>, String> {
    let mut child = Command::new(python)
        .arg("-")
        .args([
            rows.to_string(),
            value_bytes.to_string(),
            partitions.to_string(),
        ])
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(SCRIPT.as_bytes())
            .map_err(|e| format!("cannot hand the script to {}: {e}", python.display()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{} did not finish: {e}", python.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(format!(
            "FATE standalone failed ({}); the last lines it wrote:\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let secs: HashMap<String, f64> = serde_json::from_str(line)
        .map_err(|e| format!("FATE standalone printed {line:?}, not its timings: {e}"))?;
    Ok(secs
        .into_iter()
        .map(|(op, s)| (op, Duration::from_secs_f64(s.max(0.0))))
        .collect())
}
