//! A party in a role.

/// A party in a role.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Party {
    /// Role, e.g. `guest`, `host`, `arbiter`.
    pub role: String,
    /// Party id.
    pub party_id: String,
}

impl Party {
    /// `party_id` in `role`.
    pub fn new(role: &str, party_id: &str) -> Self {
        Self {
            role: role.into(),
            party_id: party_id.into(),
        }
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.role, self.party_id)
    }
}
