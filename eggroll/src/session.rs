//! `eggroll session list|show|stop|kill`: the sessions of a cluster.

use crate::client::{self, ClusterFlags};
use clap::{Args, Subcommand};
use eggroll_core::config::EggrollConfig;
use eggroll_proto::meta::{Ack, SessionId, SessionMeta};

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
            SessionCommand::Show { id: s } => show(&single(cm.get_session(id(s)).await)?),
            SessionCommand::Stop { id: s } => show(&single(cm.stop_session(id(s)).await)?),
            SessionCommand::Kill { id: s } => show(&single(cm.kill_session(id(s)).await)?),
        }
        Ok(())
    })
}

fn single(
    reply: Result<tonic::Response<SessionMeta>, tonic::Status>,
) -> Result<SessionMeta, Box<dyn std::error::Error>> {
    Ok(reply.map_err(client::status)?.into_inner())
}

fn show(s: &SessionMeta) {
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
        "\n{:<18} {:<18} {:<9} {:>8} ENDPOINT",
        "PROCESSOR", "NODE", "STATUS", "PID"
    );
    for p in &s.processors {
        println!(
            "{:<18} {:<18} {:<9} {:>8} {}",
            p.id, p.server_node_id, p.status, p.pid, p.command_endpoint
        );
    }
}
