//! Progress display for long jobs: a spinner per phase, with its elapsed time.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::time::Duration;

/// Shows the phase a job is in, with a spinner and the phase's elapsed time; drawn only
/// when stderr is a terminal.
pub struct Phases {
    bar: ProgressBar,
}

impl Phases {
    /// A spinner labelled `who`.
    pub fn new(who: &str) -> Self {
        Self::with(ProgressBar::new_spinner(), who)
    }

    /// A spinner labelled `who`, one of several drawn together.
    pub fn new_in(multi: &MultiProgress, who: &str) -> Self {
        Self::with(multi.add(ProgressBar::new_spinner()), who)
    }

    fn with(bar: ProgressBar, who: &str) -> Self {
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(who.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }

    /// Clears the spinner.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl eggroll_psi::Progress for Phases {
    fn phase(&self, name: &'static str) {
        self.bar.reset_elapsed();
        self.bar.set_message(name);
    }
}
