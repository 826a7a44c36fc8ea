//! `eggroll deploy render`: a party file (KubeFATE's `cluster.yaml` fields) into Kubernetes
//! manifests or a docker-compose bundle (crate `eggroll-deploy`).

use clap::{Args, Subcommand, ValueEnum};
use eggroll_deploy::{PartyFile, Target};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `eggroll deploy`.
#[derive(Args)]
pub struct DeployArgs {
    #[command(subcommand)]
    command: DeployCommand,
}

#[derive(Subcommand)]
enum DeployCommand {
    /// Render a party file into Kubernetes manifests or a docker-compose bundle.
    Render(RenderArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum TargetArg {
    Kubernetes,
    Compose,
}

#[derive(Args)]
struct RenderArgs {
    /// The party file (KubeFATE's cluster.yaml fields; deploy/kubernetes/README.md lists them).
    #[arg(long)]
    party: PathBuf,
    /// kubernetes: one manifest per object; compose: docker-compose.yml and conf/.
    #[arg(long, value_enum)]
    target: TargetArg,
    /// Directory to write into (made if missing). Without it, kubernetes manifests go to
    /// standard output as one multi-document YAML (for `kubectl apply -f -`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a field of the party file, e.g. rollsite.partyList[0].partyIp=192.0.2.7 or
    /// 'rollsite.localClients=[10.244.0.0/16]' (the value is YAML); repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
}

/// Runs `eggroll deploy ...`.
pub fn run(args: DeployArgs) -> Result<(), Box<dyn std::error::Error>> {
    let DeployCommand::Render(args) = args.command;
    let party = PartyFile::load(&args.party, &args.sets)?;
    let target = match args.target {
        TargetArg::Kubernetes => Target::Kubernetes,
        TargetArg::Compose => Target::Compose,
    };
    let files = eggroll_deploy::render(&party, target)?;
    let Some(dir) = args.out else {
        if target == Target::Compose {
            return Err(
                "--target compose writes a directory (docker-compose.yml and conf/): \
                        give it with --out DIR"
                    .into(),
            );
        }
        let docs: Vec<&str> = files.values().map(String::as_str).collect();
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(docs.join("---\n").as_bytes())?;
        stdout.flush()?;
        return Ok(());
    };
    if target == Target::Kubernetes {
        // Manifests of an earlier render that this one no longer makes (a module dropped)
        // would otherwise be applied again with the rest.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = name.len() > 3
                    && name.as_bytes()[..2].iter().all(u8::is_ascii_digit)
                    && name.as_bytes()[2] == b'-'
                    && name.ends_with(".yaml");
                if ours && !files.contains_key(&name) {
                    std::fs::remove_file(entry.path())
                        .map_err(|e| format!("cannot remove the stale {name}: {e}"))?;
                }
            }
        }
    }
    eggroll_deploy::write(&dir, &files)?;
    eprintln!(
        "rendered party {} ({} files) into {}",
        party.party_id,
        files.len(),
        dir.display()
    );
    Ok(())
}
