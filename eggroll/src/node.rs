//! `eggroll node list`: the node managers a cluster manager knows, and their state.

use crate::client::{self, ClusterFlags};
use clap::{Args, Subcommand};
use eggroll_core::config::EggrollConfig;
use eggroll_proto::meta::Ack;

/// Arguments of `eggroll node`.
#[derive(Args)]
pub struct NodeArgs {
    #[command(flatten)]
    cluster: ClusterFlags,
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// List the nodes: id, address, status, resources, last heartbeat.
    List,
}

/// Runs `eggroll node`.
pub fn run(args: NodeArgs, config: EggrollConfig) -> Result<(), Box<dyn std::error::Error>> {
    let address = args.cluster.address(&config);
    client::runtime()?.block_on(async {
        let mut cm = client::connect(&address).await?;
        match args.command {
            NodeCommand::List => {
                let nodes = cm
                    .list_nodes(Ack {})
                    .await
                    .map_err(client::status)?
                    .into_inner()
                    .nodes;
                println!(
                    "{:<18} {:<24} {:<7} {:>4} {:>10} {:>10} {:>6} {:>5} LAST SEEN",
                    "NODE", "ADDRESS", "STATUS", "CPUS", "MEMORY", "AVAILABLE", "LOAD", "EGGS"
                );
                for n in &nodes {
                    let node = n.node.clone().unwrap_or_default();
                    let seen = if n.last_seen_ms == u64::MAX {
                        "never since restart".to_string()
                    } else {
                        format!("{:.1}s ago", n.last_seen_ms as f64 / 1000.0)
                    };
                    println!(
                        "{:<18} {:<24} {:<7} {:>4} {:>10} {:>10} {:>6.2} {:>5} {seen}",
                        node.id,
                        format!("{}:{}", node.host, node.port),
                        node.status,
                        n.cpus,
                        client::bytes(n.memory_bytes),
                        client::bytes(n.memory_available_bytes),
                        n.load,
                        n.running_processors,
                    );
                }
                println!("{} node(s) at {address}", nodes.len());
            }
        }
        Ok(())
    })
}
