//! Processor types: which program a node manager runs for a session's eggs.

/// The session option (of `CreateSessionRequest.options`) naming its processors' type.
pub const TYPE_OPTION: &str = "eggroll.session.processor.type";

/// An egg of this workspace's `eggroll` binary: Rust functions only.
pub const EGG_PAIR: &str = "egg_pair";

/// An egg hosted by a Python process (the `eggroll` Python package's `eggroll.egg`): the same
/// egg, which also runs Python functions (FATE's) sent by the session's own client.
pub const PYTHON_EGG_PAIR: &str = "python_egg_pair";

/// The line a node manager writes on a warm egg's stdin when the egg's session ends: the egg
/// stops serving and waits for another session (see the node manager's spares).
pub const RELEASE_LINE: &str = "release";

/// The processor type a session's options ask for (the default when absent), or why it is
/// not one.
pub fn from_options(
    options: &std::collections::HashMap<String, String>,
) -> Result<&'static str, String> {
    match options.get(TYPE_OPTION).map(String::as_str) {
        None | Some("") | Some(EGG_PAIR) => Ok(EGG_PAIR),
        Some(PYTHON_EGG_PAIR) => Ok(PYTHON_EGG_PAIR),
        Some(other) => Err(format!(
            "{TYPE_OPTION} is {other:?}; it must be {EGG_PAIR:?} or {PYTHON_EGG_PAIR:?}"
        )),
    }
}
