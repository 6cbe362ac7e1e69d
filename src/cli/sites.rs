//! `netward sites list`: `ListSites` paged into a table or JSON lines.
//! Sites are mostly created by `devices import` (an unknown site name in a
//! row creates it), so listing is what operators need most.

use std::io::{self, Write as _};

use clap::Args;
use netward_shared::proto::v1::{ListSitesRequest, Site};
use serde::Serialize;

use super::InventoryArgs;
use super::table::Table;

/// Sites per `ListSites` page: the most the inventory serves in one.
const PAGE_SIZE: u32 = 1000;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// One JSON object per site and line, instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    inventory: InventoryArgs,
}

/// A site as `sites list --json` prints it.
#[derive(Debug, Serialize)]
struct SiteJson {
    id: String,
    name: String,
    code: String,
    region: String,
    address: String,
    latitude: Option<f64>,
    longitude: Option<f64>,
    active: bool,
    device_count: u32,
}

impl From<Site> for SiteJson {
    fn from(site: Site) -> Self {
        Self {
            active: site.active.unwrap_or(true),
            id: site.id,
            name: site.name,
            code: site.code,
            region: site.region,
            address: site.address,
            latitude: site.latitude,
            longitude: site.longitude,
            device_count: site.device_count,
        }
    }
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut client = args.inventory.client()?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut table = Table::new(vec!["name", "code", "region", "devices", "active"]);
    let mut page_token = String::new();
    loop {
        let page = client
            .list_sites(ListSitesRequest {
                page_size: PAGE_SIZE,
                page_token,
                ..ListSitesRequest::default()
            })
            .await
            .map_err(|status| args.inventory.call_failed("ListSites", &status))?
            .into_inner();
        for site in page.sites {
            if args.json {
                // Through a String: serde_json hides an I/O error's kind, and a
                // closed pipe must stay recognisable.
                let line = serde_json::to_string(&SiteJson::from(site))?;
                writeln!(out, "{line}")?;
            } else {
                table.push(table_row(&site));
            }
        }
        out.flush()?;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if !args.json {
        if table.is_empty() {
            eprintln!("no sites");
        } else {
            table.write(&mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn table_row(site: &Site) -> Vec<String> {
    vec![
        site.name.clone(),
        site.code.clone(),
        site.region.clone(),
        site.device_count.to_string(),
        if site.active.unwrap_or(true) {
            "yes"
        } else {
            "no"
        }
        .to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_row_shows_counts_and_the_active_flag() {
        let site = Site {
            name: "zugdidi-002".into(),
            region: "Zugdidi".into(),
            device_count: 7,
            active: Some(false),
            ..Site::default()
        };
        assert_eq!(table_row(&site), ["zugdidi-002", "", "Zugdidi", "7", "no"]);
        let json = serde_json::to_value(SiteJson::from(site)).unwrap();
        assert_eq!(json["active"], false);
        assert_eq!(json["latitude"], serde_json::Value::Null);
    }
}
