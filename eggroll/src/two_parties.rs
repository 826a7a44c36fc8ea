//! Two parties on one machine, as the demo and the tests run them: guest 9999 and host 10000,
//! each with its own roll-site (real gRPC between them, mutual TLS if asked) and its own
//! cluster (standalone in this process, or a local cluster of daemons).

use crate::local_cluster::{ClusterSpec, LocalCluster};
use eggroll_core::config::{EggrollConfig, StorageConfig};
use eggroll_federation::{BlockingFederation, FederationOptions, Party};
use eggroll_psi::{PsiOutcome, Role};
use eggroll_rollpair::{Options, RollPairContext, SessionOptions};
use eggroll_rollsite::RollSite;
use std::path::{Path, PathBuf};

/// A party's certificate, key and the CA it trusts (PEM files).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA whose certificates this party trusts.
    pub ca: PathBuf,
}

/// One party: its roll-site, its session and its federation context.
pub struct LocalParty {
    /// guest or host.
    pub role: Role,
    /// 9999 or 10000.
    pub party_id: String,
    /// Its session (standalone or on its cluster).
    pub ctx: RollPairContext,
    /// Its roll-site.
    pub site: RollSite,
    /// Its federation context for the job.
    pub fed: BlockingFederation,
    /// Its daemons, in cluster mode.
    _cluster: Option<LocalCluster>,
}

/// Both parties, and the runtime their roll-sites run on.
pub struct TwoParties {
    /// The guest, party 9999.
    pub guest: LocalParty,
    /// The host, party 10000.
    pub host: LocalParty,
    /// Runs the roll-sites and federation calls.
    pub rt: tokio::runtime::Runtime,
}

/// How the parties are set up.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Run each party on a local cluster of daemons (guest two nodes, host one) instead of
    /// standalone; the daemons run `program`.
    pub cluster: Option<PathBuf>,
    /// Mutual TLS between the roll-sites: (guest's files, host's files).
    pub tls: Option<(TlsFiles, TlsFiles)>,
    /// Storage settings of standalone parties (the user's: memory budget, caches).
    pub storage: StorageConfig,
}

/// Any error of setting up or running the parties.
pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// The config of party `party`'s roll-site under `root/party`: 127.0.0.1, free ports, an empty
/// route table file, TLS with `tls` when given.
pub fn rollsite_config(root: &Path, party: &str, tls: Option<&TlsFiles>) -> EggrollConfig {
    let mut c = EggrollConfig {
        data_dir: root.join(party).join("data"),
        ..Default::default()
    };
    let rs = &mut c.rollsite;
    rs.party_id = party.into();
    rs.host = "127.0.0.1".into();
    rs.port = 0;
    rs.secure_port = 0;
    rs.route_table = root.join(party).join("route_table.json");
    rs.buffer_dir = root.join(party).join("rollsite");
    if let Some(t) = tls {
        rs.tls_cert = t.cert.clone();
        rs.tls_key = t.key.clone();
        rs.tls_ca = t.ca.clone();
    }
    c
}

/// Points `site`'s route table at `peer`'s roll-site (over TLS when it has a secure port).
pub fn route(
    site: &RollSite,
    config: &EggrollConfig,
    peer_id: &str,
    peer: &RollSite,
) -> Result<(), AnyError> {
    let hop = match peer.secure_addr() {
        Some(a) => format!(
            r#"{{"ip": "127.0.0.1", "port": {}, "use_ssl": true}}"#,
            a.port()
        ),
        None => format!(r#"{{"ip": "127.0.0.1", "port": {}}}"#, peer.addr().port()),
    };
    let text = format!(
        r#"{{"route_table": {{"{peer_id}": {{"default": [{hop}]}}}}, "permission": {{"default_allow": true}}}}"#
    );
    std::fs::write(&config.rollsite.route_table, text)?;
    site.site().routes.reload_if_changed();
    if let Some(e) = site.site().routes.last_error() {
        return Err(format!("route table of party {}: {e}", config.rollsite.party_id).into());
    }
    Ok(())
}

impl TwoParties {
    /// Starts both roll-sites and both sessions under `root`, for job `job`.
    pub fn start(root: &Path, job: &str, setup: &Setup) -> Result<Self, AnyError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let ids = [("9999", Role::Guest, 2usize), ("10000", Role::Host, 1usize)];
        let mut configs = Vec::new();
        let mut sites = Vec::new();
        for (i, (party, _, _)) in ids.iter().enumerate() {
            std::fs::create_dir_all(root.join(party))?;
            let tls = setup.tls.as_ref().map(|(g, h)| if i == 0 { g } else { h });
            let mut c = rollsite_config(root, party, tls);
            c.storage = setup.storage.clone();
            std::fs::write(&c.rollsite.route_table, r#"{"route_table": {}}"#)?;
            sites.push(rt.block_on(eggroll_rollsite::start(&c))?);
            configs.push(c);
        }
        route(&sites[0], &configs[0], ids[1].0, &sites[1])?;
        route(&sites[1], &configs[1], ids[0].0, &sites[0])?;
        let mut parties = Vec::new();
        for (((party, role, nodes), site), config) in ids.into_iter().zip(sites).zip(configs) {
            let (ctx, cluster) = match &setup.cluster {
                Some(program) => {
                    let dir = root.join(party).join("cluster");
                    let spec = ClusterSpec {
                        nodes,
                        ..Default::default()
                    };
                    let daemons = LocalCluster::start(program, &dir, spec)?;
                    let ctx = RollPairContext::connect(
                        daemons.address(),
                        SessionOptions {
                            name: format!("psi demo party {party}"),
                            processors_per_node: 2,
                            ..Default::default()
                        },
                    )?;
                    (ctx, Some(daemons))
                }
                None => (RollPairContext::standalone_with(&config)?, None),
            };
            let fed = BlockingFederation::in_process(
                site.site(),
                rt.handle().clone(),
                job,
                Party::new(role.name(), party),
                FederationOptions::from_config(&config.rollsite),
            )?;
            parties.push(LocalParty {
                role,
                party_id: party.into(),
                ctx,
                site,
                fed,
                _cluster: cluster,
            });
        }
        let host = parties.pop().ok_or("no host")?;
        let guest = parties.pop().ok_or("no guest")?;
        Ok(Self { guest, host, rt })
    }

    /// Runs the PSI: the guest with `guest_ids`, the host with `host_ids`, at once, each
    /// party's table in `partitions` partitions. `progress` makes a progress display per party.
    pub fn psi(
        &self,
        guest_ids: impl Iterator<Item = String> + Send,
        host_ids: impl Iterator<Item = String> + Send,
        partitions: u32,
        progress: &(dyn Fn(&str) -> Box<dyn eggroll_psi::Progress + Send> + Sync),
    ) -> Result<(PsiOutcome, PsiOutcome), AnyError> {
        let side = |p: &LocalParty,
                    peer: &LocalParty,
                    ids: Box<dyn Iterator<Item = String> + Send + '_>|
         -> Result<PsiOutcome, AnyError> {
            let table = p
                .ctx
                .parallelize(ids.map(|id| (id, ())), Options::partitions(partitions))?;
            let peer = Party::new(peer.role.name(), &peer.party_id);
            let shown = progress(&format!("{} {}", p.role.name(), p.party_id));
            let out = eggroll_psi::run(p.role, &table, &p.fed, &peer, shown.as_ref());
            table.destroy()?;
            Ok(out?)
        };
        std::thread::scope(|s| {
            let g = s.spawn(|| side(&self.guest, &self.host, Box::new(guest_ids)));
            let h = s.spawn(|| side(&self.host, &self.guest, Box::new(host_ids)));
            let g = g.join().map_err(|_| "the guest's thread panicked")?;
            let h = h.join().map_err(|_| "the host's thread panicked")?;
            Ok((g?, h?))
        })
    }

    /// Ends both sessions and roll-sites.
    pub fn stop(self) -> Result<(), AnyError> {
        let TwoParties { guest, host, rt } = self;
        for p in [guest, host] {
            p.ctx.stop()?;
            rt.block_on(p.site.shutdown());
        }
        Ok(())
    }
}
