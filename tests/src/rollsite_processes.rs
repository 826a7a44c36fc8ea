//! Roll-sites as processes (`eggroll rollsite`, started as an operator would), which a test
//! can SIGKILL and start again on the same port and data dir.

use crate::cluster::binary;
use crate::free_port;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A roll-site process of party `party` on 127.0.0.1:`port`; killed when dropped.
pub struct RollsiteProcess {
    child: Option<Child>,
    party: String,
    port: u16,
    routes: PathBuf,
    data: PathBuf,
    env: Vec<(String, String)>,
}

/// Writes under `dir` a route table that sends party `to` to 127.0.0.1:`port`; its path.
pub fn route_to(dir: &Path, to: &str, port: u16) -> PathBuf {
    let p = dir.join(format!("routes-to-{to}.json"));
    std::fs::write(
        &p,
        format!(
            r#"{{"route_table": {{"{to}": {{"default": [{{"ip": "127.0.0.1", "port": "{port}"}}]}}}}}}"#
        ),
    )
    .expect("write a route table");
    p
}

impl RollsiteProcess {
    /// Starts party `party`'s roll-site on `port` with the route table `routes`, its data
    /// under `dir` and `env` in its environment (config overrides), and waits until it
    /// listens.
    pub fn start(dir: &Path, party: &str, port: u16, routes: &Path, env: &[(&str, &str)]) -> Self {
        let mut site = RollsiteProcess {
            child: None,
            party: party.into(),
            port,
            routes: routes.into(),
            data: dir.join(format!("data-{party}")),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        site.spawn();
        site
    }

    /// The guest's (9999) and the host's (10000) roll-sites on free ports of 127.0.0.1, each
    /// routing to the other, with `env` in both environments.
    pub fn pair(dir: &Path, env: &[(&str, &str)]) -> [Self; 2] {
        let (pg, ph) = (free_port(), free_port());
        [
            Self::start(dir, "9999", pg, &route_to(dir, "10000", ph), env),
            Self::start(dir, "10000", ph, &route_to(dir, "9999", pg), env),
        ]
    }

    /// "127.0.0.1:port".
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where its log goes.
    pub fn log(&self) -> PathBuf {
        self.data.with_extension("log")
    }

    /// SIGKILLs the process (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again, same port, same data dir, and waits until it listens.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut child = Command::new(binary())
            .args(["rollsite", "--party-id", &self.party])
            .args(["--port", &self.port.to_string()])
            .args(["--http-port", "0"])
            .arg("--route-table")
            .arg(&self.routes)
            .env("EGGROLL_DATA_DIR", &self.data)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start eggroll rollsite");
        let mut line = String::new();
        let mut err = BufReader::new(child.stderr.take().expect("piped stderr"));
        err.read_line(&mut line)
            .expect("read the roll-site's first line");
        assert!(
            line.contains("listening"),
            "roll-site {} did not start: {line}",
            self.party
        );
        // The rest of its log goes to a file beside its data (every run appended), read
        // while it runs so that it never blocks on a full pipe.
        let log = self.data.with_extension("log");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the roll-site's log");
        std::thread::spawn(move || std::io::copy(&mut err, &mut file));
        self.child = Some(child);
    }
}

impl Drop for RollsiteProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
