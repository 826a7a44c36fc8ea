//! The two-party protocol, written only against the roll-pair and federation APIs, so it runs
//! on standalone and distributed parties alike.
//!
//! Guest (G, ids X, secret a) and host (H, ids Y, secret b):
//!
//! 1. G: `A = X.map(x → (H(x)·a, x))`; sends `A`'s keys. H: `B = Y.map(y → (H(y)·b, y))`;
//!    sends `B`'s keys.
//! 2. H: blinds G's points again, `H(x)·a → H(x)·ab`, and sends the pairs back.
//! 3. G: blinds H's points, `H(y)·ba`; joins its own ids with their doubly blinded points;
//!    joins those with H's doubly blinded points: the intersection. G sends the intersection's
//!    ids to H, which is all H learns.

use crate::crypto::{Point, Secret};
use crate::functions::{BlindKey, BlindValue, Forget, HashBlind, KeepId, KeyByDouble, WithDouble};
use eggroll_federation::{BlockingFederation, Party};
use eggroll_rollpair::RollPair;
use std::time::{Duration, Instant};

/// What a PSI run can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PsiError {
    /// A table operation failed.
    #[error("table operation: {0}")]
    Table(#[from] eggroll_rollpair::Error),
    /// A transfer through roll-site failed.
    #[error("federation: {0}")]
    Federation(#[from] eggroll_federation::Error),
    /// Anything else, said plainly.
    #[error("{0}")]
    Other(String),
}

/// Which side of the protocol this party plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Learns the intersection first and tells the host.
    Guest,
    /// Learns the intersection from the guest.
    Host,
}

impl Role {
    /// "guest" or "host", as FATE names them.
    pub fn name(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::Host => "host",
        }
    }
}

/// What a finished run reports.
#[derive(Debug)]
pub struct PsiOutcome {
    /// The ids both parties hold, sorted.
    pub intersection: Vec<String>,
    /// Each phase's name and time.
    pub phases: Vec<(&'static str, Duration)>,
    /// Bytes this party pushed to the other (blinded points and the result).
    pub bytes_sent: u64,
    /// Transfers (tables and objects) this party pushed to the other.
    pub transfers_sent: u64,
}

/// Reports phases as they start, for progress display.
pub trait Progress {
    /// A phase starts.
    fn phase(&self, name: &'static str);
}

impl Progress for () {
    fn phase(&self, _: &'static str) {}
}

struct Run<'a> {
    fed: &'a BlockingFederation,
    peer: Vec<Party>,
    phases: Vec<(&'static str, Duration)>,
    started: Instant,
    current: &'static str,
    progress: &'a dyn Progress,
    bytes_sent: u64,
    transfers_sent: u64,
}

impl Run<'_> {
    fn phase(&mut self, name: &'static str) {
        self.end_phase();
        self.current = name;
        self.started = Instant::now();
        self.progress.phase(name);
    }

    fn end_phase(&mut self) {
        if !self.current.is_empty() {
            self.phases.push((self.current, self.started.elapsed()));
        }
    }

    fn send<V>(&mut self, t: &RollPair<Point, V>, name: &str) -> Result<(), PsiError>
    where
        V: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let sent = self.fed.remote_table(t, name, "psi", &self.peer)?;
        self.bytes_sent += sent;
        self.transfers_sent += 1;
        Ok(())
    }

    fn receive<V>(
        &self,
        ctx: &eggroll_rollpair::RollPairContext,
        name: &str,
    ) -> Result<RollPair<Point, V>, PsiError>
    where
        V: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let mut got = self
            .fed
            .get_table::<Point, V>(ctx, name, "psi", &self.peer)?;
        got.pop()
            .ok_or_else(|| PsiError::Other(format!("no table {name} arrived from the peer")))
    }
}

/// Runs the PSI of `ids` with `peer`. Blocks; call it from an ordinary thread. When this side
/// fails, it tells the peer (`BlockingFederation::abort`), whose waiting gets then fail at
/// once with this side's reason.
pub fn run(
    role: Role,
    ids: &RollPair<String, ()>,
    fed: &BlockingFederation,
    peer: &Party,
    progress: &dyn Progress,
) -> Result<PsiOutcome, PsiError> {
    let mut run = Run {
        fed,
        peer: vec![peer.clone()],
        phases: Vec::new(),
        started: Instant::now(),
        current: "",
        progress,
        bytes_sent: 0,
        transfers_sent: 0,
    };
    match run_protocol(&mut run, role, ids) {
        Ok(intersection) => {
            run.end_phase();
            Ok(PsiOutcome {
                intersection,
                phases: run.phases,
                bytes_sent: run.bytes_sent,
                transfers_sent: run.transfers_sent,
            })
        }
        Err(e) => {
            let reason = format!("its PSI failed: {e}");
            if fed.abort(&reason, std::slice::from_ref(peer)).is_err() {
                tracing::warn!(peer = %peer.party_id, "could not tell the peer that this PSI failed");
            }
            Err(e)
        }
    }
}

/// Destroys a table the protocol is done with. A failure only costs memory until the session
/// ends, so it is logged, not raised.
fn discard<K, V>(t: RollPair<K, V>) {
    let name = t.name().to_string();
    if let Err(e) = t.destroy() {
        tracing::warn!(table = %name, "could not destroy an intermediate table: {e}");
    }
}

/// The protocol's steps, in `run`'s phases; the ids of the intersection.
fn run_protocol(
    run: &mut Run,
    role: Role,
    ids: &RollPair<String, ()>,
) -> Result<Vec<String>, PsiError> {
    let fed = run.fed;
    let ctx = ids.context();
    let secret = Secret::random().map_err(PsiError::Other)?;

    run.phase("hash and blind own ids");
    let own = ids.map(&HashBlind {
        secret: secret.clone(),
    })?;
    let points = own.map_values(&Forget)?;

    // Both parties send their blinded ids first; the roles differ from then on. Each table is
    // destroyed as soon as the protocol is done with it: at a million ids a table is tens of
    // megabytes, and a party would otherwise hold all eight at once.
    run.phase("exchange blinded ids");
    let (mine, peers) = match role {
        Role::Guest => ("guest_blinded", "host_blinded"),
        Role::Host => ("host_blinded", "guest_blinded"),
    };
    run.send(&points, mine)?;
    discard(points);
    let theirs: RollPair<Point, ()> = run.receive(ctx, peers)?;

    let intersection = match role {
        Role::Guest => {
            run.phase("blind the host's points");
            let theirs_double = theirs.flat_map(&BlindKey {
                secret: secret.clone(),
            })?;
            discard(theirs);
            run.phase("receive own points blinded by the host");
            let own_double: RollPair<Point, Point> = run.receive(ctx, "guest_double")?;
            run.phase("join");
            let with_double = own.join(&own_double, &WithDouble)?;
            discard(own);
            discard(own_double);
            let keyed = with_double.map(&KeyByDouble)?;
            discard(with_double);
            let mine = keyed.join(&theirs_double, &KeepId)?;
            discard(keyed);
            discard(theirs_double);
            let mut found: Vec<String> = mine
                .get_all()?
                .map(|r| r.map(|(_, id)| id))
                .collect::<Result<_, _>>()?;
            discard(mine);
            found.sort_unstable();
            run.phase("send the intersection");
            let sent = fed.remote_bytes(
                eggroll_core::codec::encode(&found).map_err(|e| PsiError::Other(e.to_string()))?,
                "intersection",
                "psi",
                &run.peer,
            )?;
            run.bytes_sent += sent;
            run.transfers_sent += 1;
            found
        }
        Role::Host => {
            discard(own);
            run.phase("blind the guest's points");
            let doubled = theirs.flat_map(&BlindValue {
                secret: secret.clone(),
            })?;
            discard(theirs);
            run.send(&doubled, "guest_double")?;
            discard(doubled);
            run.phase("receive the intersection");
            let bytes = fed.get_bytes("intersection", "psi", &run.peer)?;
            let bytes = bytes
                .into_iter()
                .next()
                .ok_or_else(|| PsiError::Other("no intersection arrived from the guest".into()))?;
            let found: Vec<String> = eggroll_core::codec::decode(&bytes, &|| {
                "the intersection sent by the guest".to_string()
            })
            .map_err(|e| PsiError::Other(e.to_string()))?;
            // The guest can only name ids the host holds; anything else is a faulty peer.
            let named = ctx.parallelize(
                found.iter().map(|id| (id.clone(), ())),
                eggroll_rollpair::Options::partitions(ids.partitions()),
            )?;
            let unknown_ids = named.subtract_by_key(ids)?;
            discard(named);
            let unknown = unknown_ids.count()?;
            discard(unknown_ids);
            if unknown > 0 {
                return Err(PsiError::Other(format!(
                    "the guest's intersection names {unknown} ids that this party does not hold; the guest is faulty"
                )));
            }
            found
        }
    };
    Ok(intersection)
}
