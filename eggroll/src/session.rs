//! `eggroll session list|show|stop|kill`: the sessions of a cluster.

use crate::client::{self, ClusterFlags};
use clap::{Args, Subcommand};
use eggroll_core::config::EggrollConfig;
use eggroll_proto::meta::egg_service_client::EggServiceClient;
use eggroll_proto::meta::{Ack, EggUsage, SessionId, SessionMeta};
use std::time::Duration;

/// Arguments of `eggroll session`.
#[derive(Args)]
pub struct SessionArgs {
    #[command(flatten)]
    cluster: ClusterFlags,
    #[command(subcommand)]
    command: SessionCommand,
}

#[derive(Subcommand)]
enum SessionCommand {
    /// List sessions, newest first.
    List,
    /// Show one session: its state, the reason if it failed, and its processors.
    Show { id: String },
    /// Stop a session: its eggs finish and exit.
    Stop { id: String },
    /// Kill a session: its eggs are killed at once.
    Kill { id: String },
}

/// Runs `eggroll session`.
pub fn run(args: SessionArgs, config: EggrollConfig) -> Result<(), Box<dyn std::error::Error>> {
    let address = args.cluster.address(&config);
    client::runtime()?.block_on(async {
        let mut cm = client::connect(&address).await?;
        let id = |id: String| SessionId { id };
        match args.command {
            SessionCommand::List => {
                let sessions = cm
                    .list_sessions(Ack {})
                    .await
                    .map_err(client::status)?
                    .into_inner()
                    .sessions;
                println!(
                    "{:<36} {:<8} {:>10} {:<12} REASON",
                    "SESSION", "STATUS", "PROCESSORS", "CREATED"
                );
                for s in &sessions {
                    let reason = s.reason.lines().next().unwrap_or("");
                    println!(
                        "{:<36} {:<8} {:>10} {:<12} {reason}",
                        s.id,
                        s.status().as_str_name(),
                        s.processors.len(),
                        client::ago(s.created_ms),
                    );
                }
                println!("{} session(s) at {address}", sessions.len());
            }
            // Each answers with the session as it is now.
            SessionCommand::Show { id: s } => {
                let s = single(cm.get_session(id(s)).await)?;
                let usages = usages(&s).await;
                show(&s, &usages);
            }
            SessionCommand::Stop { id: s } => show(&single(cm.stop_session(id(s)).await)?, &[]),
            SessionCommand::Kill { id: s } => show(&single(cm.kill_session(id(s)).await)?, &[]),
        }
        Ok(())
    })
}

fn single(
    reply: Result<tonic::Response<SessionMeta>, tonic::Status>,
) -> Result<SessionMeta, Box<dyn std::error::Error>> {
    Ok(reply.map_err(client::status)?.into_inner())
}

/// Each processor's memory figures, asked of the egg itself; `None` where it did not answer
/// within two seconds (gone, or busy past that).
async fn usages(s: &SessionMeta) -> Vec<Option<EggUsage>> {
    let mut out = Vec::new();
    for p in &s.processors {
        let ask = async {
            let channel = eggroll_core::channel::endpoint(&p.command_endpoint)
                .ok()?
                .connect()
                .await
                .ok()?;
            let mut egg = EggServiceClient::new(channel);
            Some(egg.usage(Ack {}).await.ok()?.into_inner())
        };
        out.push(
            tokio::time::timeout(Duration::from_secs(2), ask)
                .await
                .ok()
                .flatten(),
        );
    }
    out
}

/// Prints a session and its processors, with each one's memory where `usages` has it.
fn show(s: &SessionMeta, usages: &[Option<EggUsage>]) {
    println!("session   {}", s.id);
    if !s.name.is_empty() {
        println!("name      {}", s.name);
    }
    println!("status    {}", s.status().as_str_name());
    println!("created   {}", client::ago(s.created_ms));
    if !s.reason.is_empty() {
        println!("reason    {}", s.reason.replace('\n', "\n          "));
    }
    println!(
        "\n{:<18} {:<18} {:<9} {:>8} {:<22} {:>19} {:>21} {:>9}",
        "PROCESSOR", "NODE", "STATUS", "PID", "ENDPOINT", "TABLES", "SPILLED", "RSS"
    );
    for (i, p) in s.processors.iter().enumerate() {
        // In-memory tables against the egg's budget; what spilled (bytes, partitions).
        let (tables, spilled, rss) = match usages.get(i).and_then(Option::as_ref) {
            Some(u) => (
                format!(
                    "{}/{}",
                    client::bytes(u.memory_used),
                    client::bytes(u.memory_limit)
                ),
                format!(
                    "{} ({} parts)",
                    client::bytes(u.spilled_bytes),
                    u.spilled_partitions
                ),
                client::bytes(u.rss_bytes),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<18} {:<18} {:<9} {:>8} {:<22} {tables:>19} {spilled:>21} {rss:>9}",
            p.id, p.server_node_id, p.status, p.pid, p.command_endpoint
        );
    }
}
