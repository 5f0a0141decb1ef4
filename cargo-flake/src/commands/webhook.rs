//! `cargo flake webhook`: where the team service sends its events.

use std::fmt::Write;

use flake_core::store::WebhookEndpoint;

use super::{
    Error, Usage, open_existing_history, open_history, print_stderr, print_stdout, show_store,
    workspace,
};
use crate::cli::{ListFormat, WebhookCommand};
use crate::{EXIT_GATE_FAILED, EXIT_OK};

use flake_core::webhooks::EVENTS;

/// Runs a `webhook` subcommand.
pub fn run(cmd: WebhookCommand) -> Result<u8, Error> {
    let (_, ws) = workspace()?;
    let now = flake_core::meta::now_ms();
    match cmd {
        WebhookCommand::Add { db, url, events } => {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://")) || url.len() < 10 {
                return Err(Box::new(Usage(format!(
                    "--url `{url}` is not an http:// or https:// URL"
                ))));
            }
            let mut wanted: Vec<String> = Vec::new();
            for e in events.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
                if !EVENTS.contains(&e) {
                    let hint = flake_core::config::suggest(e, EVENTS.iter().copied())
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_else(|| format!("; known events: {}", EVENTS.join(", ")));
                    return Err(Box::new(Usage(format!("unknown event `{e}`{hint}"))));
                }
                if !wanted.iter().any(|w| w == e) {
                    wanted.push(e.to_owned());
                }
            }
            if wanted.is_empty() {
                return Err(Box::new(Usage("--events names no event".into())));
            }
            let secret = flake_core::webhooks::new_secret().map_err(|e| Usage(e.to_string()))?;
            let mut store = open_history(&ws, &db)?;
            let endpoint = WebhookEndpoint {
                id: 0,
                project: store.project().to_owned(),
                url,
                events: wanted,
                secret: secret.clone(),
                previous_secret: None,
                previous_until: None,
                created_at: now,
                disabled_at: None,
                disabled_reason: None,
                failing_since: None,
            };
            let id = store.insert_webhook(&endpoint)?;
            // The secret alone on stdout, for `SECRET=$(cargo flake webhook add ...)`.
            print_stdout(&format!("{secret}\n"))?;
            print_stderr(&format!(
                "added webhook {id} of project {} in {} -> {} ({}); its secret is shown only this once\n",
                endpoint.project,
                show_store(&store),
                endpoint.url,
                endpoint.events.join(", ")
            ));
            Ok(EXIT_OK)
        }
        WebhookCommand::List { db, format } => {
            let store = open_existing_history(&ws, &db)?;
            let list = store.webhooks(Some(store.project()))?;
            match format {
                ListFormat::Json => {
                    let mut s = serde_json::to_string_pretty(&list)?;
                    s.push('\n');
                    print_stdout(&s)?;
                }
                ListFormat::Human => {
                    let mut out = String::new();
                    if list.is_empty() {
                        let _ = writeln!(out, "no webhooks for project {}", store.project());
                    }
                    for e in &list {
                        let state = match (&e.disabled_at, &e.disabled_reason) {
                            (Some(_), Some(why)) => format!("disabled: {why}"),
                            (Some(_), None) => "disabled".to_owned(),
                            _ => "active".to_owned(),
                        };
                        let _ = writeln!(
                            out,
                            "{:>5}  {}  [{}]  {state}",
                            e.id,
                            e.url,
                            e.events.join(", ")
                        );
                    }
                    print_stdout(&out)?;
                }
            }
            Ok(EXIT_OK)
        }
        WebhookCommand::Remove { db, id } => {
            let mut store = open_existing_history(&ws, &db)?;
            if owned(&store, id)? && store.remove_webhook(id)? {
                print_stderr(&format!("removed webhook {id}\n"));
                Ok(EXIT_OK)
            } else {
                print_stderr(&format!(
                    "project {} has no webhook {id}\n",
                    store.project()
                ));
                Ok(EXIT_GATE_FAILED)
            }
        }
        WebhookCommand::RotateSecret { db, id, overlap } => {
            let mut store = open_existing_history(&ws, &db)?;
            let secret = flake_core::webhooks::new_secret().map_err(|e| Usage(e.to_string()))?;
            let until = now.saturating_add(i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX));
            if owned(&store, id)? && store.rotate_webhook_secret(id, &secret, until)? {
                print_stdout(&format!("{secret}\n"))?;
                print_stderr(&format!(
                    "webhook {id} has a new secret (shown only this once); the old one signs too until {}\n",
                    flake_core::meta::format_time(until)
                ));
                Ok(EXIT_OK)
            } else {
                print_stderr(&format!(
                    "project {} has no webhook {id}\n",
                    store.project()
                ));
                Ok(EXIT_GATE_FAILED)
            }
        }
    }
}

/// Whether endpoint `id` belongs to the store's project: one project's
/// command never touches another's endpoints.
fn owned(store: &flake_core::store::Store, id: i64) -> Result<bool, Error> {
    Ok(store
        .webhooks(Some(store.project()))?
        .iter()
        .any(|e| e.id == id))
}
