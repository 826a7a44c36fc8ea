//! A Python egg: the egg-pair server of `eggroll eggpair`, run inside the Python process that
//! `python -m eggroll.egg` starts, so that the functions of its tasks can be Python ones.

use crate::err;
use eggroll_core::config::EggrollConfig;
use eggroll_eggpair::process::{run, EggArgs, Ended};
use pyo3::prelude::*;
use std::path::PathBuf;

/// Serves as processor `processor_id` of `session_id` until the node manager closes this
/// process's stdin (or SIGTERM), or releases it; Python's lock is free meanwhile, for the
/// tasks' functions. True when released: this process may serve another session.
#[pyfunction]
pub fn serve_egg(
    py: Python<'_>,
    session_id: String,
    processor_id: u64,
    cluster_manager: String,
    host: String,
    data_dir: PathBuf,
) -> PyResult<bool> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EGGROLL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: egg and daemon logs are files, quoted in errors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    // The node manager's settings reach its eggs through EGGROLL_CONFIG and EGGROLL_* variables.
    let config_file = std::env::var_os("EGGROLL_CONFIG").map(PathBuf::from);
    let config = EggrollConfig::load(config_file.as_deref()).map_err(err)?;
    let args = EggArgs {
        session_id,
        processor_id,
        cluster_manager,
        host,
        data_dir,
        storage: config.storage,
        watch_stdin: true,
    };
    py.allow_threads(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the egg's runtime: {e}"))?;
        let served = runtime.block_on(run(args));
        // A task still in a user's function is not waited for: the egg is ending (a released
        // one has none left, see `run`).
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        served.map(|ended| ended == Ended::Released)
    })
    .map_err(err)
}
