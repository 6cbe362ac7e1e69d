//! `netward token create NAME --role ROLE [--region R] [--site S]`: a new
//! random token, printed once, and the `[[auth.tokens]]` entry that accepts
//! it (its SHA-256 only); `netward token hash` gives the entry of an
//! existing token read from standard input; `netward token grant-key` a key
//! for `auth.grant_key`. Nothing here talks to a server.

use std::io::{self, BufRead, Write};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use netward_shared::auth::{Role, token_sha256};
use rand::RngCore;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token: prints it once, then the config entry that accepts it
    Create(CreateArgs),
    /// The config entry of an existing token, read from standard input
    Hash(CreateArgs),
    /// A random key for `auth.grant_key` (hex), shared by the planner and alerting
    GrantKey,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Who holds it: audit events and logs show this name
    name: String,
    /// admin, operator, viewer, executor or service
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Limit an operator or viewer to a region (repeat for several)
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// Limit an operator or viewer to a site, by id, name or code (repeat for several)
    #[arg(long = "site", value_name = "SITE")]
    sites: Vec<String>,
    /// One JSON object (token, name, role, regions, sites, sha256) instead of text
    #[arg(long)]
    json: bool,
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match command {
        TokenCommand::Create(args) => {
            args.check()?;
            let token = new_token();
            args.print(&mut out, Some(&token), &token_sha256(&token))?;
        }
        TokenCommand::Hash(args) => {
            args.check()?;
            let mut line = String::new();
            io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the token from standard input")?;
            let token = line.trim_end_matches(['\r', '\n']);
            if token.is_empty() {
                bail!("no token on standard input");
            }
            args.print(&mut out, None, &token_sha256(token))?;
        }
        TokenCommand::GrantKey => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            writeln!(out, "{}", hex::encode(key))?;
        }
    }
    Ok(())
}

/// `nwt_` and 32 random bytes in hex: recognisable in a leak scan, and
/// safe in a header, an environment variable and a TOML string.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("nwt_{}", hex::encode(bytes))
}

impl CreateArgs {
    fn check(&self) -> anyhow::Result<()> {
        if self.name.trim().is_empty() {
            bail!("a token needs a name");
        }
        let scoped = !self.regions.is_empty() || !self.sites.is_empty();
        if scoped && !matches!(self.role, Role::Operator | Role::Viewer) {
            bail!(
                "--region and --site limit operators and viewers; a {} token is not scoped",
                self.role
            );
        }
        Ok(())
    }

    fn print(&self, out: &mut impl Write, token: Option<&str>, sha256: &str) -> io::Result<()> {
        if self.json {
            let mut value = serde_json::json!({
                "name": self.name,
                "role": self.role.name(),
                "regions": self.regions,
                "sites": self.sites,
                "sha256": sha256,
            });
            if let Some(token) = token {
                value["token"] = token.into();
            }
            return writeln!(out, "{value}");
        }
        if let Some(token) = token {
            // The token alone on the first line (`| head -1`), away from the
            // entry, so that pasting the entry never pastes the token.
            writeln!(out, "{token}")?;
            writeln!(out)?;
            writeln!(
                out,
                "# Shown this once: give the token above to {:?} (NETWARD_TOKEN, or auth.peer_token",
                self.name
            )?;
            writeln!(
                out,
                "# for a service) and add this to the config of every target that should accept it:"
            )?;
        }
        writeln!(out, "[[auth.tokens]]")?;
        writeln!(out, "name = {}", toml_string(&self.name))?;
        writeln!(out, "role = \"{}\"", self.role)?;
        if !self.regions.is_empty() {
            writeln!(out, "regions = {}", toml_list(&self.regions))?;
        }
        if !self.sites.is_empty() {
            writeln!(out, "sites = {}", toml_list(&self.sites))?;
        }
        writeln!(out, "sha256 = \"{sha256}\"")
    }
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

fn toml_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| toml_string(item)).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netward_shared::auth::{AuthConfig, Authenticator};

    /// The printed entry parses as `[auth]` config and accepts the token.
    #[test]
    fn the_printed_entry_accepts_the_token() {
        let args = CreateArgs {
            name: "emea \"noc\"".into(),
            role: Role::Operator,
            regions: vec!["EMEA".into()],
            sites: vec![],
            json: false,
        };
        let token = new_token();
        let mut out = Vec::new();
        args.print(&mut out, Some(&token), &token_sha256(&token))
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let (first, entry) = text.split_once('\n').unwrap();
        assert_eq!(first, token);
        assert!(!entry.contains(&token));
        #[derive(serde::Deserialize)]
        struct File {
            auth: AuthConfig,
        }
        let file: File = toml::from_str(entry).unwrap();
        let auth = Authenticator::new(None, &file.auth).unwrap();
        let caller = auth.identify(token.as_bytes()).unwrap();
        assert_eq!(caller.name, "emea \"noc\"");
        assert_eq!(caller.role, Role::Operator);
        assert_eq!(caller.scope.regions, ["EMEA"]);
        assert!(auth.identify(b"nwt_other").is_none());
    }

    #[test]
    fn only_operators_and_viewers_are_scoped() {
        let args = CreateArgs {
            name: "x".into(),
            role: Role::Executor,
            regions: vec!["EMEA".into()],
            sites: vec![],
            json: false,
        };
        assert!(args.check().is_err());
    }
}
