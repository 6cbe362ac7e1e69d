//! `netward credentials create|list|delete`: SNMP credentials in the
//! inventory. Secrets (a community, v3 keys) never come from an argument —
//! arguments end up in shell history and in every user's `ps` — but from a
//! variable (`NETWARD_SNMP_COMMUNITY`, `NETWARD_SNMP_AUTH_KEY`,
//! `NETWARD_SNMP_PRIV_KEY`), a prompt that does not echo, or, when standard
//! input is not a terminal, one line of it per secret in that order.

use std::io::{self, BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use clap::Args;
use netward_shared::proto::v1::{
    CreateCredentialRequest, DeleteCredentialRequest, GetCredentialRequest, ListCredentialsRequest,
    SnmpAuthProtocol, SnmpCredential, SnmpPrivProtocol, SnmpVersion, get_credential_request,
};
use serde::Serialize;

use super::InventoryArgs;
use super::csv_format::snmp_version_text;
use super::table::Table;
use super::words::{enum_text, parse_enum};

/// Credentials per page: the most the inventory serves in one.
const PAGE_SIZE: u32 = 1000;

/// The variables the secrets are read from, before any prompt.
const COMMUNITY_VAR: &str = "NETWARD_SNMP_COMMUNITY";
const AUTH_KEY_VAR: &str = "NETWARD_SNMP_AUTH_KEY";
const PRIV_KEY_VAR: &str = "NETWARD_SNMP_PRIV_KEY";

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Unique name of the credential (what devices name in their snmp_credential column)
    name: String,
    /// SNMP version: 1, 2c or 3
    #[arg(long, value_name = "1|2c|3", value_parser = parse_version)]
    snmp_version: SnmpVersion,
    /// SNMPv3 user name
    #[arg(long, value_name = "USER")]
    username: Option<String>,
    /// SNMPv3 authentication protocol: none, md5, sha1, sha224, sha256, sha384, sha512
    #[arg(long, value_name = "PROTOCOL", value_parser = parse_auth, default_value = "none")]
    auth_protocol: SnmpAuthProtocol,
    /// SNMPv3 privacy protocol: none, des, aes128, aes192, aes256
    #[arg(long, value_name = "PROTOCOL", value_parser = parse_priv, default_value = "none")]
    priv_protocol: SnmpPrivProtocol,
    /// SNMPv3 context name
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Free-text description
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Print the created credential as JSON
    #[arg(long)]
    json: bool,
    /// Refused: a secret is never an argument (see NETWARD_SNMP_COMMUNITY)
    #[arg(long, hide = true, value_name = "SECRET")]
    community: Option<String>,
    /// Refused: a secret is never an argument (see NETWARD_SNMP_AUTH_KEY)
    #[arg(long, hide = true, value_name = "SECRET")]
    auth_key: Option<String>,
    /// Refused: a secret is never an argument (see NETWARD_SNMP_PRIV_KEY)
    #[arg(long, hide = true, value_name = "SECRET")]
    priv_key: Option<String>,
    #[command(flatten)]
    inventory: InventoryArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only credentials whose name or user name contains this (any case)
    #[arg(long, value_name = "TEXT")]
    query: Option<String>,
    /// One JSON object per credential and line, instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    inventory: InventoryArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Name or id of the credential; refused while devices use it
    credential: String,
    #[command(flatten)]
    inventory: InventoryArgs,
}

fn parse_version(text: &str) -> Result<SnmpVersion, String> {
    match text.trim().to_ascii_lowercase().trim_start_matches('v') {
        "1" => Ok(SnmpVersion::V1),
        "2c" | "2" => Ok(SnmpVersion::V2c),
        "3" => Ok(SnmpVersion::V3),
        _ => Err(format!("unknown SNMP version {text:?}: one of 1, 2c, 3")),
    }
}

fn parse_auth(text: &str) -> Result<SnmpAuthProtocol, String> {
    parse_enum(
        "auth protocol",
        text,
        "SNMP_AUTH_PROTOCOL_",
        SnmpAuthProtocol::from_str_name,
        SnmpAuthProtocol::as_str_name,
    )
}

fn parse_priv(text: &str) -> Result<SnmpPrivProtocol, String> {
    parse_enum(
        "privacy protocol",
        text,
        "SNMP_PRIV_PROTOCOL_",
        SnmpPrivProtocol::from_str_name,
        SnmpPrivProtocol::as_str_name,
    )
}

/// A credential as `--json` prints it: never a secret, only whether one is set.
#[derive(Debug, Serialize)]
struct CredentialJson {
    id: String,
    name: String,
    version: String,
    community_set: bool,
    username: String,
    auth_protocol: String,
    auth_key_set: bool,
    priv_protocol: String,
    priv_key_set: bool,
    context_name: String,
    description: String,
    device_count: u32,
    created_at: Option<String>,
    updated_at: Option<String>,
}

impl From<&SnmpCredential> for CredentialJson {
    fn from(c: &SnmpCredential) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            version: snmp_version_text(c.version()).to_string(),
            community_set: c.community_set,
            username: c.username.clone(),
            auth_protocol: auth_text(c.auth_protocol()),
            auth_key_set: c.auth_key_set,
            priv_protocol: priv_text(c.priv_protocol()),
            priv_key_set: c.priv_key_set,
            context_name: c.context_name.clone(),
            description: c.description.clone(),
            device_count: c.device_count,
            created_at: c.created_at.map(|at| at.to_string()),
            updated_at: c.updated_at.map(|at| at.to_string()),
        }
    }
}

fn auth_text(protocol: SnmpAuthProtocol) -> String {
    enum_text(protocol.as_str_name(), "SNMP_AUTH_PROTOCOL_")
}

fn priv_text(protocol: SnmpPrivProtocol) -> String {
    enum_text(protocol.as_str_name(), "SNMP_PRIV_PROTOCOL_")
}

/// Where the secrets come from when no variable holds them.
struct SecretSource {
    terminal: bool,
}

impl SecretSource {
    fn new() -> Self {
        Self {
            terminal: io::stdin().is_terminal(),
        }
    }

    /// The secret from `var`, else from the prompt or the next line of
    /// standard input; an empty one is an error naming both ways.
    fn read(&mut self, what: &str, var: &str) -> anyhow::Result<String> {
        if let Ok(value) = std::env::var(var)
            && !value.is_empty()
        {
            return Ok(value);
        }
        let value = if self.terminal {
            prompt_hidden(&format!("{what}: "))?
        } else {
            let mut line = String::new();
            // Standard input's buffer is shared, so each line is locked for alone.
            io::stdin()
                .lock()
                .read_line(&mut line)
                .with_context(|| format!("cannot read the {what} from standard input"))?;
            line.trim_end_matches(['\r', '\n']).to_string()
        };
        if value.is_empty() {
            bail!(
                "no {what} given: set {var}, type it at the prompt, or pipe it in as a line of standard input"
            );
        }
        Ok(value)
    }
}

/// Asks on the terminal with echo off, restoring the terminal however the
/// read ends.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    eprint!("{prompt}");
    io::stderr().flush()?;
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot turn the terminal's echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    read.context("cannot read from the terminal")?;
    restored.context("cannot restore the terminal's echo")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub async fn create(args: CreateArgs) -> anyhow::Result<()> {
    for (given, var) in [
        (&args.community, COMMUNITY_VAR),
        (&args.auth_key, AUTH_KEY_VAR),
        (&args.priv_key, PRIV_KEY_VAR),
    ] {
        if given.is_some() {
            bail!(
                "secrets are never taken as arguments (they stay in shell history and show in ps): \
                 set {var}, type it at the prompt, or pipe it in"
            );
        }
    }
    let mut request = CreateCredentialRequest {
        name: args.name.clone(),
        version: args.snmp_version as i32,
        username: args.username.clone().unwrap_or_default(),
        auth_protocol: args.auth_protocol as i32,
        priv_protocol: args.priv_protocol as i32,
        context_name: args.context.clone().unwrap_or_default(),
        description: args.description.clone().unwrap_or_default(),
        ..CreateCredentialRequest::default()
    };
    let mut secrets = SecretSource::new();
    if args.snmp_version == SnmpVersion::V3 {
        if request.username.is_empty() {
            bail!("an SNMPv3 credential needs --username");
        }
        if args.auth_protocol != SnmpAuthProtocol::None {
            request.auth_key = secrets.read("authentication passphrase", AUTH_KEY_VAR)?;
        }
        if args.priv_protocol != SnmpPrivProtocol::None {
            request.priv_key = secrets.read("privacy passphrase", PRIV_KEY_VAR)?;
        }
    } else {
        request.community = secrets.read("community", COMMUNITY_VAR)?;
    }
    let mut client = args.inventory.client()?;
    let created = client
        .create_credential(request)
        .await
        .map_err(|status| args.inventory.call_failed("CreateCredential", &status))?
        .into_inner()
        .credential
        .context("CreateCredential answered without the credential")?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&CredentialJson::from(&created))?
        )?;
    } else {
        writeln!(
            out,
            "created credential {} ({}), SNMP {}",
            created.name,
            created.id,
            snmp_version_text(created.version())
        )?;
    }
    Ok(())
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut client = args.inventory.client()?;
    let mut credentials = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_credentials(ListCredentialsRequest {
                query: args.query.clone().unwrap_or_default(),
                page_size: PAGE_SIZE,
                page_token,
            })
            .await
            .map_err(|status| args.inventory.call_failed("ListCredentials", &status))?
            .into_inner();
        credentials.extend(page.credentials);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    if args.json {
        for credential in &credentials {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&CredentialJson::from(credential))?
            )?;
        }
    } else if credentials.is_empty() {
        eprintln!("no credentials");
    } else {
        write_table(&mut out, &credentials)?;
    }
    out.flush()?;
    Ok(())
}

fn write_table(out: &mut impl io::Write, credentials: &[SnmpCredential]) -> io::Result<()> {
    let mut table = Table::new(vec![
        "name",
        "version",
        "secret",
        "user",
        "auth",
        "priv",
        "devices",
        "id",
        "description",
    ]);
    for c in credentials {
        let secret = match (c.community_set, c.auth_key_set, c.priv_key_set) {
            (true, _, _) => "community",
            (_, true, true) => "auth+priv keys",
            (_, true, false) => "auth key",
            _ => "-",
        };
        let v3 = c.version() == SnmpVersion::V3;
        table.push(vec![
            c.name.clone(),
            snmp_version_text(c.version()).to_string(),
            secret.to_string(),
            if c.username.is_empty() {
                "-".into()
            } else {
                c.username.clone()
            },
            if v3 {
                auth_text(c.auth_protocol())
            } else {
                "-".into()
            },
            if v3 {
                priv_text(c.priv_protocol())
            } else {
                "-".into()
            },
            c.device_count.to_string(),
            c.id.clone(),
            c.description.clone(),
        ]);
    }
    table.write(out)
}

pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let mut client = args.inventory.client()?;
    // A name or an id: the inventory says which one exists.
    let key = if uuid_like(&args.credential) {
        get_credential_request::Key::Id(args.credential.clone())
    } else {
        get_credential_request::Key::Name(args.credential.clone())
    };
    let credential = client
        .get_credential(GetCredentialRequest { key: Some(key) })
        .await
        .map_err(|status| args.inventory.call_failed("GetCredential", &status))?
        .into_inner()
        .credential
        .context("GetCredential answered without the credential")?;
    client
        .delete_credential(DeleteCredentialRequest {
            id: credential.id.clone(),
        })
        .await
        .map_err(|status| args.inventory.call_failed("DeleteCredential", &status))?;
    println!("deleted credential {} ({})", credential.name, credential.id);
    Ok(())
}

/// A UUID's shape (8-4-4-4-12 hex digits).
pub fn uuid_like(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_protocols_read_as_operators_write_them() {
        assert_eq!(parse_version("2c"), Ok(SnmpVersion::V2c));
        assert_eq!(parse_version("v3"), Ok(SnmpVersion::V3));
        assert!(parse_version("4").unwrap_err().contains("1, 2c, 3"));
        assert_eq!(parse_priv("AES128"), Ok(SnmpPrivProtocol::Aes128));
        assert!(parse_priv("aes512").unwrap_err().contains("aes256"));
    }

    #[test]
    fn the_table_names_which_secrets_are_set_never_their_values() {
        let credential = SnmpCredential {
            id: "0b2f".into(),
            name: "branch-v3".into(),
            version: SnmpVersion::V3 as i32,
            username: "noc".into(),
            auth_protocol: SnmpAuthProtocol::Sha256 as i32,
            auth_key_set: true,
            priv_protocol: SnmpPrivProtocol::Aes128 as i32,
            priv_key_set: true,
            device_count: 12,
            ..SnmpCredential::default()
        };
        let mut out = Vec::new();
        write_table(&mut out, &[credential]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("branch-v3  3        auth+priv keys  noc   sha256  aes128  12"),
            "{text}"
        );
    }

    #[test]
    fn ids_are_told_from_names() {
        assert!(uuid_like("6f1c2f4e-9a43-4a8e-8a55-0f6d2a1b3c4d"));
        assert!(!uuid_like("branch-v3"));
    }
}
