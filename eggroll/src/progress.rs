//! Progress display for long jobs: a spinner per phase, with its elapsed time.

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;
use std::time::Duration;

/// Shows the phase a job is in; prints each finished phase with its time.
pub struct Phases {
    bar: ProgressBar,
    current: Mutex<Option<String>>,
}

impl Phases {
    /// A spinner labelled `who`; hidden when stderr is not a terminal.
    pub fn new(who: &str) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(who.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Self {
            bar,
            current: Mutex::new(None),
        }
    }

    /// Clears the spinner.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl eggroll_psi::Progress for Phases {
    fn phase(&self, name: &'static str) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = Some(name.to_string());
        self.bar.reset_elapsed();
        self.bar.set_message(name);
    }
}
