//! Validation of user-given names (namespaces, table names) that become directory names.

use crate::error::{CoreError, Result};

/// Checks that a namespace or table name is safe to use as one directory name.
pub fn validate_name(kind: &str, name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(CoreError::InvalidArgument(format!(
            "{kind} `{name}` {why}; use letters, digits and `_ - . #` (at most 200 bytes)"
        )))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 200 {
        return bad("is too long");
    }
    if name == "." || name == ".." || name.starts_with('.') {
        return bad("starts with a dot");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c == '\0' || c.is_control())
    {
        return bad("holds a path separator or a control character");
    }
    Ok(())
}

/// Checks a partition count given by a user.
pub fn validate_partitions(total: u32) -> Result<()> {
    if total == 0 {
        return Err(CoreError::InvalidArgument(
            "partition count is 0; a table needs at least 1 partition".into(),
        ));
    }
    if total > 65_536 {
        return Err(CoreError::InvalidArgument(format!(
            "partition count {total} is over the limit of 65536"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unsafe_names() {
        for bad in ["", ".", "..", "a/b", ".hidden", "x\0y"] {
            assert!(validate_name("table", bad).is_err(), "{bad:?}");
        }
        for good in ["t1", "表", "__rsk#a#b", "my-table.v2"] {
            validate_name("table", good).unwrap();
        }
        assert!(validate_partitions(0)
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
    }
}
