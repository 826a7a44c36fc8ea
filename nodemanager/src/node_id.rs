//! A node's identity: made once and kept in its data dir, so persistent partitions recorded on
//! this node are found on it again after a restart.

use std::path::Path;

/// The file that holds the id.
pub const NODE_ID_FILE: &str = "NODE_ID";

/// Reads the node id from `data_dir`, making and saving a new one on first start.
pub fn load_or_create(data_dir: &Path) -> Result<u64, String> {
    let path = data_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().ok().filter(|id| *id != 0).ok_or_else(|| {
            format!(
                "{} holds {:?}, not a node id; restore it, or delete it to make this a new node (its persistent partitions will not be found)",
                path.display(),
                text.trim()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
            let id = fresh_id();
            let tmp = data_dir.join(format!("{NODE_ID_FILE}.tmp"));
            std::fs::write(&tmp, format!("{id}\n"))
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// A new id from the clock and the process id, folded to 52 bits so it prints and parses
/// cleanly everywhere (JSON readers lose precision past 2^53).
fn fresh_id() -> u64 {
    let mut x = eggroll_core::clock::epoch_nanos() ^ ((std::process::id() as u64) << 32);
    // splitmix64 finalizer: spreads nearby clock values apart.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^= x >> 31;
    (x & ((1 << 52) - 1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_across_restarts_and_bad_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        assert_eq!(load_or_create(dir.path()).unwrap(), a);
        std::fs::write(dir.path().join(NODE_ID_FILE), "garbage").unwrap();
        let err = load_or_create(dir.path()).unwrap_err();
        assert!(err.contains("NODE_ID") && err.contains("garbage"), "{err}");
    }
}
