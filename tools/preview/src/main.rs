//! `flb-fanout preview --config extra.conf --records sample.jsonl`

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "flb-fanout",
    version,
    about = "Tools for the flb-fanout Fluent Bit plugin"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show, for each sample record, where every `fanout` output of a Fluent Bit config would
    /// send it (Datadog service, source, tags; Firehose stream) and the exact payloads. Sends
    /// nothing.
    Preview {
        /// Fluent Bit config in classic format (e.g. FireLens's extra.conf); @INCLUDEs followed.
        #[arg(long)]
        config: PathBuf,
        /// Sample records: JSON lines (objects, [time, object], or Fluent Bit stdout json_lines).
        #[arg(long)]
        records: Vec<PathBuf>,
        /// Tag the records carry.
        #[arg(long, default_value = "app")]
        tag: String,
        /// NAME=VALUE for ${NAME} in the config, taking precedence over the environment.
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
    },
}

fn main() -> ExitCode {
    let Command::Preview {
        config,
        records,
        tag,
        env,
    } = Cli::parse().command;
    let overrides: HashMap<String, String> = env
        .iter()
        .filter_map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    let lookup = |name: &str| {
        overrides
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    };
    let mut events = Vec::new();
    for path in &records {
        match std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| flb_fanout_tools::parse_records(&text))
        {
            Ok(mut parsed) => events.append(&mut parsed),
            Err(e) => {
                eprintln!("flb-fanout: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match flb_fanout_tools::preview(&config, &events, &tag, &lookup) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flb-fanout: {e}");
            ExitCode::FAILURE
        }
    }
}
