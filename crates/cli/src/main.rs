//! `openwatch`: the command line of the compliance engine.
//!
//! * `openwatch scan --local` — scan this machine (with `--sudo` for root-only facts);
//! * `openwatch scan --target user@host[:port] --key FILE` — scan a host over SSH;
//! * `openwatch rules lint` — validate the rule corpus (CI runs it).
//!
//! Output is a readable report, or JSON with `--format json`. Exit status: 0 when the
//! scan ran, 1 on usage or scan errors (with a readable message).

mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use openwatch_engine::rules::RuleSet;
use openwatch_engine::scan::{ScanOptions, scan};
use openwatch_engine::transport::{
    HostKeyPolicy, LocalTransport, SshAuth, SshTarget, SshTransport, Transport,
};
use secrecy::SecretString;

#[derive(Parser)]
#[command(name = "openwatch", version, about = "Agentless Linux compliance scanning")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scan this machine or one host over SSH.
    Scan(ScanArgs),
    /// Work with the rule corpus.
    #[command(subcommand)]
    Rules(RulesCommand),
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load every rule strictly and run its fixtures; report all problems.
    Lint {
        /// Rule corpus directory.
        #[arg(long, env = "OPENWATCH_RULES_DIR", default_value = "rules")]
        rules: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Args)]
struct ScanArgs {
    /// Scan this machine.
    #[arg(long, conflicts_with = "target")]
    local: bool,
    /// Scan `user@host[:port]` over SSH.
    #[arg(long)]
    target: Option<String>,
    /// Private key file for SSH (read into memory; never copied anywhere).
    #[arg(long, requires = "target")]
    key: Option<PathBuf>,
    /// Environment variable holding the SSH password (instead of a key).
    #[arg(long, requires = "target")]
    password_env: Option<String>,
    /// Accepted host key fingerprint(s) (`SHA256:…`); without any, the first key seen is
    /// trusted and printed.
    #[arg(long = "known-host-key", requires = "target")]
    known_host_keys: Vec<String>,
    /// Run the collection with `sudo -n` (root-only facts: sshd -T, /etc/shadow, audit).
    #[arg(long)]
    sudo: bool,
    /// Only rules mapped to this framework (e.g. `cis-debian12`).
    #[arg(long)]
    framework: Option<String>,
    /// Rule corpus directory.
    #[arg(long, env = "OPENWATCH_RULES_DIR", default_value = "rules")]
    rules: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Show every result, not only failures and errors.
    #[arg(long)]
    all: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("openwatch: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Rules(RulesCommand::Lint { rules }) => lint(&rules),
        Command::Scan(args) => scan_command(args),
    }
}

fn load_rules(dir: &Path) -> anyhow::Result<RuleSet> {
    RuleSet::load_dir(dir).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{} rule file(s) failed to load:\n{}", errors.len(), lines.join("\n"))
    })
}

/// Loads the corpus strictly and runs every rule's passing and failing fixtures.
fn lint(dir: &Path) -> anyhow::Result<ExitCode> {
    let rules = load_rules(dir)?;
    let problems = openwatch_engine::fixtures::check_corpus(&rules, &dir.join("fixtures"));
    if !problems.is_empty() {
        bail!("{} problem(s) in the rule corpus:\n{}", problems.len(), problems.join("\n"));
    }
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{} rules loaded from {}; every fixture passes and fails as it should",
            rules.rules.len(),
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn scan_command(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let rules = load_rules(&args.rules)?;
    let mut transport: Box<dyn Transport> = if args.local {
        Box::new(if args.sudo { LocalTransport::with_sudo() } else { LocalTransport::new() })
    } else if let Some(target) = &args.target {
        Box::new(SshTransport::new(ssh_target(target, &args)?))
    } else {
        bail!("say what to scan: --local or --target user@host[:port]");
    };
    let options = ScanOptions { framework: args.framework.clone(), ..ScanOptions::default() };
    let report = scan(&rules, transport.as_mut(), &options)
        .map_err(|e| anyhow::anyhow!("scan of {} failed ({}): {e}", transport.target(), e.code()))?;
    match args.format {
        Format::Json => report::print_json(&report)?,
        Format::Text => report::print_text(&transport.target(), &report, args.all),
    }
    Ok(ExitCode::SUCCESS)
}

fn ssh_target(target: &str, args: &ScanArgs) -> anyhow::Result<SshTarget> {
    let (username, host_port) = target.split_once('@').context("--target must be user@host[:port]")?;
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().with_context(|| format!("invalid port `{port}`"))?),
        None => (host_port, 22),
    };
    let auth = match (&args.key, &args.password_env) {
        (Some(path), None) => SshAuth::PrivateKey {
            key_pem: SecretString::from(
                std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?,
            ),
            passphrase: None,
        },
        (None, Some(var)) => SshAuth::Password(SecretString::from(
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?,
        )),
        _ => bail!("give exactly one of --key FILE or --password-env VAR"),
    };
    let host_key_policy = HostKeyPolicy::TrustOnFirstUse { known: args.known_host_keys.clone() };
    Ok(SshTarget {
        host: host.to_owned(),
        port,
        username: username.to_owned(),
        auth,
        host_key_policy,
        use_sudo: args.sudo,
    })
}
