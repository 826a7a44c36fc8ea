//! The deployment guide's rehearsal (`deploy/systemd/rehearse.sh`) with this build's binary:
//! two parties of daemons on loopback addresses, started from the deploy/ samples with every
//! address of the samples overridden, the PSI job between them over mutual TLS.

use std::process::{Command, Stdio};

#[test]
fn the_guides_rehearsal_passes_on_loopback() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/systemd/rehearse.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_eggroll"))
        .stdin(Stdio::null())
        .output()
        .expect("cannot start bash to run the rehearsal");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(
        out.status.success() && stdout.contains("rehearse: PASSED"),
        "the rehearsal failed ({}); its output is above, the reason on its FAILED line",
        out.status
    );
}
