//! `eggroll table ls|count|head`: look into the tables of a cluster (with
//! `--cluster-manager` or `EGGROLL_CLUSTER_MANAGER`) or of a standalone data dir.

use crate::client::{self, ClusterFlags};
use clap::{Args, Subcommand};
use eggroll_core::config::EggrollConfig;
use eggroll_eggpair::{KeyRange, Stores};
use std::path::PathBuf;

/// Arguments of `eggroll table`.
#[derive(Args)]
pub struct TableArgs {
    /// Data dir of the standalone tables (default: the config's data_dir).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    cluster: ClusterFlags,
    /// Ask the cluster manager of the config file instead of reading a data dir.
    #[arg(long, global = true)]
    cluster_mode: bool,
    #[command(subcommand)]
    command: TableCommand,
}

#[derive(Subcommand)]
enum TableCommand {
    /// List persistent tables (glob patterns for namespace and name).
    Ls {
        #[arg(default_value = "*")]
        namespace: String,
        #[arg(default_value = "*")]
        name: String,
    },
    /// Count the pairs of a table.
    Count { namespace: String, name: String },
    /// Print the first pairs of a table as escaped bytes.
    Head {
        namespace: String,
        name: String,
        #[arg(short, long, default_value_t = 10)]
        n: usize,
    },
}

/// Runs `eggroll table`.
pub fn run(args: TableArgs, config: EggrollConfig) -> Result<(), Box<dyn std::error::Error>> {
    if args.data_dir.is_none() && (args.cluster.cluster_manager.is_some() || args.cluster_mode) {
        let address = args.cluster.address(&config);
        return on_cluster(args.command, &address);
    }
    let dir = args.data_dir.unwrap_or(config.data_dir);
    if !dir.is_dir() {
        return Err(format!(
            "data dir {} does not exist; pass --data-dir or set EGGROLL_DATA_DIR",
            dir.display()
        )
        .into());
    }
    let stores = Stores::open(&dir, config.storage)?;
    match args.command {
        TableCommand::Ls { namespace, name } => {
            let tables = stores.list(&namespace, &name)?;
            print_tables(&tables);
            println!("{} table(s) in {}", tables.len(), dir.display());
        }
        TableCommand::Count { namespace, name } => {
            let l = stores.load(eggroll_proto_store_type(), &namespace, &name)?;
            let mut total = 0;
            for p in 0..l.total_partitions {
                total += stores.partition(&l, p)?.count()?;
            }
            println!("{total}");
        }
        TableCommand::Head { namespace, name, n } => {
            let l = stores.load(eggroll_proto_store_type(), &namespace, &name)?;
            let mut shown = 0;
            'parts: for p in 0..l.total_partitions {
                for pair in stores.partition(&l, p)?.iter(KeyRange::all())? {
                    if shown >= n {
                        break 'parts;
                    }
                    let (k, v) = pair?;
                    println!("[{p}] {} => {}", show(&k), show(&v));
                    shown += 1;
                }
            }
        }
    }
    Ok(())
}

fn print_tables(tables: &[eggroll_proto::meta::StoreLocator]) {
    println!(
        "{:<24} {:<32} {:>10}  {:<20} VALUE TYPE",
        "NAMESPACE", "NAME", "PARTITIONS", "KEY TYPE"
    );
    for t in tables {
        println!(
            "{:<24} {:<32} {:>10}  {:<20} {}",
            t.namespace, t.name, t.total_partitions, t.key_type, t.value_type
        );
    }
}

/// The same commands against a cluster: listing asks the cluster manager; count and head
/// start a small session, since the data lives on the eggs.
fn on_cluster(command: TableCommand, address: &str) -> Result<(), Box<dyn std::error::Error>> {
    use eggroll_core::codec::Bytes;
    use eggroll_rollpair::{RollPairContext, SessionOptions};
    if let TableCommand::Ls { namespace, name } = &command {
        let stores = client::runtime()?.block_on(async {
            let mut cm = client::connect(address).await?;
            let q = eggroll_proto::meta::StoreQuery {
                namespace: namespace.clone(),
                name: name.clone(),
            };
            let list = cm
                .list_stores(q)
                .await
                .map_err(client::status)?
                .into_inner();
            Ok::<_, Box<dyn std::error::Error>>(list.stores)
        })?;
        let tables: Vec<_> = stores.into_iter().filter_map(|s| s.locator).collect();
        print_tables(&tables);
        println!("{} table(s) at {address}", tables.len());
        return Ok(());
    }
    let ctx = RollPairContext::connect(
        address,
        SessionOptions {
            name: "eggroll table".into(),
            processors_per_node: 1,
            ..Default::default()
        },
    )?;
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        match command {
            TableCommand::Ls { .. } => {}
            TableCommand::Count { namespace, name } => {
                println!("{}", ctx.load::<Bytes, Bytes>(&namespace, &name)?.count()?);
            }
            TableCommand::Head { namespace, name, n } => {
                let t = ctx.load::<Bytes, Bytes>(&namespace, &name)?;
                for (k, v) in t.take_encoded(n as u64)? {
                    println!("{} => {}", show(&k), show(&v));
                }
            }
        }
        Ok(())
    })();
    ctx.stop()?;
    result
}

fn eggroll_proto_store_type() -> eggroll_proto::meta::StoreType {
    eggroll_proto::meta::StoreType::PERSISTENT
}

/// Escaped bytes, cut after 80 so one huge value does not flood the terminal.
fn show(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(80)
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    if bytes.len() > 80 {
        format!("b\"{shown}\"… ({} bytes)", bytes.len())
    } else {
        format!("b\"{shown}\"")
    }
}
