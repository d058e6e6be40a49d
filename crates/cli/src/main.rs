//! `openwatch`: the command line of the compliance engine.
//!
//! * `openwatch scan --local` — scan this machine (`--sudo` for root-only facts);
//! * `openwatch scan --target user@host[:port] (--key FILE | --password-env VAR)` — over SSH,
//!   with the host key checked against `--known-hosts FILE` / `--known-host-key SHA256:…`,
//!   or trusted on first use with `--trust-on-first-use`;
//! * `openwatch rules list | show ID | lint | coverage` — the rule corpus.
//!
//! Exit status: 0 when every applicable rule passed, 1 when failures were found, 2 on
//! usage, configuration or connection errors (with a readable message).

mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use openwatch_engine::rules::RuleSet;
use openwatch_engine::scan::{ScanOptions, scan};
use openwatch_engine::transport::known_hosts;
use openwatch_engine::transport::{
    HostKeyPolicy, LocalTransport, SshAuth, SshTarget, SshTransport, Transport,
};
use secrecy::SecretString;

/// Exit status when the scan found failing rules.
const EXIT_FAILURES: u8 = 1;
/// Exit status for usage, configuration and connection errors (clap uses 2 as well).
const EXIT_ERROR: u8 = 2;

#[derive(Parser)]
#[command(name = "openwatch", version, about = "Agentless Linux compliance scanning")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scan this machine or one host over SSH.
    Scan(Box<ScanArgs>),
    /// Work with the rule corpus.
    #[command(subcommand)]
    Rules(RulesCommand),
}

#[derive(Args)]
struct RulesArgs {
    /// Rule corpus: a directory, or a glob of rule files (`rules/ssh/*.yml`).
    #[arg(long, env = "OPENWATCH_RULES", default_value = "rules")]
    rules: String,
}

#[derive(Subcommand)]
enum RulesCommand {
    /// List the rules: id, severity, category, platforms, frameworks.
    List(RulesArgs),
    /// Show one rule as loaded.
    Show {
        /// Rule id.
        id: String,
        #[command(flatten)]
        corpus: RulesArgs,
    },
    /// Load every rule strictly and run its fixtures; report all problems.
    Lint(RulesArgs),
    /// Print the JSON Schema of a rule file.
    Schema,
    /// Per framework, controls covered by rules / all controls, from `rules/frameworks/*.csv`.
    Coverage {
        #[command(flatten)]
        corpus: RulesArgs,
        /// Framework control lists (default: `frameworks/` inside the rules directory).
        #[arg(long)]
        frameworks: Option<PathBuf>,
        /// Output format: `text` (a table) or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
}

/// Output formats of a scan.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// Summary then failed and error rules with evidence.
    Table,
    /// The whole report as JSON.
    Json,
    /// JUnit XML (one test case per rule) for CI systems.
    Junit,
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
    #[arg(long, requires = "target", conflicts_with = "password_env")]
    key: Option<PathBuf>,
    /// Environment variable holding the SSH password.
    #[arg(long, requires = "target")]
    password_env: Option<String>,
    /// OpenSSH known_hosts file holding the host's key.
    #[arg(long, requires = "target")]
    known_hosts: Option<PathBuf>,
    /// Accepted host key fingerprint (`SHA256:…`, as `ssh-keygen -lf` prints); repeatable.
    #[arg(long = "known-host-key", requires = "target")]
    known_host_keys: Vec<String>,
    /// Accept an unknown host key and print its fingerprint (a known one must still match).
    #[arg(long, requires = "target")]
    trust_on_first_use: bool,
    /// Run the collection with `sudo -n` (root-only facts: sshd -T, /etc/shadow, audit).
    #[arg(long)]
    sudo: bool,
    /// Only rules mapped to this framework (e.g. `cis-debian12`), with its variable values.
    #[arg(long)]
    framework: Option<String>,
    #[command(flatten)]
    corpus: RulesArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// In the table, show every result, not only failures and errors.
    #[arg(long)]
    all: bool,
    /// Skip the filesystem walk (world-writable, unowned, SUID/SGID files): faster scans;
    /// walk rules are reported as not applicable.
    #[arg(long)]
    no_walk: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("openwatch: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Scan(args) => scan_command(*args),
        Command::Rules(RulesCommand::List(corpus)) => {
            report::print_rule_list(&load_rules(&corpus.rules)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules(RulesCommand::Show { id, corpus }) => {
            let rules = load_rules(&corpus.rules)?;
            let rule = rules.rules.get(&id).with_context(|| format!("no rule `{id}` in {}", corpus.rules))?;
            report::print_rule(rule)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules(RulesCommand::Lint(corpus)) => lint(&corpus.rules),
        Command::Rules(RulesCommand::Schema) => {
            report::say(&serde_json::to_string_pretty(&openwatch_engine::rules::rule_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules(RulesCommand::Coverage { corpus, frameworks, format }) => {
            coverage(&corpus.rules, frameworks, &format)
        }
    }
}

fn load_rules(spec: &str) -> anyhow::Result<RuleSet> {
    RuleSet::load(spec).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{} rule file(s) failed to load:\n{}", errors.len(), lines.join("\n"))
    })
}

/// Loads the corpus strictly and runs every rule's passing and failing fixtures.
fn lint(spec: &str) -> anyhow::Result<ExitCode> {
    let rules = load_rules(spec)?;
    let fixtures = std::path::Path::new(spec.split(['*', '?']).next().unwrap_or(spec));
    let fixtures_dir =
        if fixtures.is_dir() { fixtures.join("fixtures") } else { PathBuf::from("rules/fixtures") };
    let problems = openwatch_engine::fixtures::check_corpus(&rules, &fixtures_dir);
    if !problems.is_empty() {
        bail!("{} problem(s) in the rule corpus:\n{}", problems.len(), problems.join("\n"));
    }
    report::say(&format!(
        "{} rules loaded from {spec}; every fixture passes and fails as it should",
        rules.rules.len()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Prints the coverage of every framework list; exit 1 (after the table) when a rule
/// references a control id that its framework's list does not hold.
fn coverage(spec: &str, frameworks: Option<PathBuf>, format: &str) -> anyhow::Result<ExitCode> {
    use openwatch_engine::frameworks;
    let rules = load_rules(spec)?;
    let dir = frameworks.unwrap_or_else(|| {
        let base = std::path::Path::new(spec.split(['*', '?']).next().unwrap_or(spec));
        if base.is_dir() { base.join("frameworks") } else { PathBuf::from("rules/frameworks") }
    });
    let lists = frameworks::load_dir(&dir).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{} framework list(s) failed to load:\n{}", errors.len(), lines.join("\n"))
    })?;
    let report = frameworks::coverage(&rules, &lists);
    match format {
        "json" => report::say(&serde_json::to_string_pretty(&report)?),
        _ => report::say(report.to_text().trim_end()),
    }
    let unknown = report.unknown_controls().count();
    if unknown > 0 {
        report::say_err(&format!(
            "{unknown} reference(s) to control ids missing from the lists in {}; \
             fix the rules' `references` (or the list, if it is incomplete)",
            dir.display()
        ));
        return Ok(ExitCode::from(EXIT_FAILURES));
    }
    Ok(ExitCode::SUCCESS)
}

fn scan_command(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let rules = load_rules(&args.corpus.rules)?;
    let options =
        ScanOptions { framework: args.framework.clone(), walk: !args.no_walk, ..ScanOptions::default() };
    let (result, target, observed_key) = if args.local {
        let mut transport = if args.sudo { LocalTransport::with_sudo() } else { LocalTransport::new() };
        (scan(&rules, &mut transport, &options), transport.target(), None)
    } else if let Some(target) = &args.target {
        let mut transport = SshTransport::new(ssh_target(target, &args)?);
        (scan(&rules, &mut transport, &options), transport.target(), transport.observed_host_key())
    } else {
        bail!("say what to scan: --local or --target user@host[:port]");
    };
    let report = result.map_err(|e| anyhow::anyhow!("scan of {target} failed ({}): {e}", e.code()))?;
    if let (true, Some(key)) = (args.trust_on_first_use, observed_key) {
        report::say_err(&format!(
            "host key {} {} accepted; pin it with --known-host-key {}",
            key.key_type, key.fingerprint_sha256, key.fingerprint_sha256
        ));
    }
    let rendered = match args.format {
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
        Format::Table => report::table(&target, &report, args.all),
        Format::Junit => report::junit(&target, &report),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, rendered).with_context(|| format!("writing {}", path.display()))?
        }
        None => report::say(rendered.trim_end()),
    }
    let failed = report.score.overall.fail > 0;
    Ok(if failed { ExitCode::from(EXIT_FAILURES) } else { ExitCode::SUCCESS })
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
    let mut known = args.known_host_keys.clone();
    if let Some(path) = &args.known_hosts {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let entries = known_hosts::keys_for(&text, host, port);
        if entries.skipped > 0 {
            report::say_err(&format!(
                "{}: {} entries skipped (hashed hosts, markers or wildcards are not supported)",
                path.display(),
                entries.skipped
            ));
        }
        known.extend(entries.fingerprints);
    }
    let host_key_policy = if args.trust_on_first_use {
        HostKeyPolicy::TrustOnFirstUse { known }
    } else {
        HostKeyPolicy::Strict { known }
    };
    Ok(SshTarget {
        host: host.to_owned(),
        port,
        username: username.to_owned(),
        auth,
        host_key_policy,
        use_sudo: args.sudo,
    })
}
