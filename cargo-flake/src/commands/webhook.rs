//! `cargo flake webhook`: where the team service sends its events.

use crate::commands::print_json;
use std::fmt::Write;

use flake_core::store::WebhookEndpoint;

use super::{
    Error, Usage, open_existing_history, open_history, print_stderr, print_stdout, show_store,
    workspace,
};
use crate::cli::{ListFormat, WebhookCommand};
use crate::{EXIT_GATE_FAILED, EXIT_OK};

/// Runs a `webhook` subcommand.
pub fn run(cmd: WebhookCommand) -> Result<u8, Error> {
    if let WebhookCommand::Verify {
        secret,
        id,
        timestamp,
        signature,
        tolerance,
    } = cmd
    {
        return verify(&secret, &id, timestamp, &signature, tolerance);
    }
    let (_, ws) = workspace()?;
    let now = flake_core::meta::now_ms();
    match cmd {
        WebhookCommand::Add { db, url, events } => {
            flake_core::webhooks::check_url(&url).map_err(|e| Usage(format!("--url {e}")))?;
            let wanted = flake_core::webhooks::parse_events(events.iter().map(String::as_str))
                .map_err(|e| Usage(format!("--events: {e}")))?;
            let secret = flake_core::webhooks::new_secret().map_err(|e| Usage(e.to_string()))?;
            let mut store = open_history(&ws, &db)?;
            let endpoint = WebhookEndpoint::new(store.project(), url, wanted, secret.clone(), now);
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
                    print_json(&list)?;
                }
                ListFormat::Human => {
                    let mut out = String::new();
                    if list.is_empty() {
                        let _ = writeln!(out, "no webhooks for project {}", store.project());
                    }
                    for e in &list {
                        let state = match (&e.disabled_at, &e.disabled_reason, e.failing_since) {
                            (Some(at), Some(why), _) => {
                                format!("disabled {}: {why}", flake_core::meta::format_time(*at))
                            }
                            (Some(at), None, _) => {
                                format!("disabled {}", flake_core::meta::format_time(*at))
                            }
                            (None, _, Some(since)) => format!(
                                "active, failing since {}",
                                flake_core::meta::format_time(since)
                            ),
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
                Ok(no_webhook(&store, id))
            }
        }
        WebhookCommand::Test { db, id, wait } => {
            let mut store = open_existing_history(&ws, &db)?;
            if !owned(&store, id)? {
                return Ok(no_webhook(&store, id));
            }
            test(&mut store, id, wait)
        }
        WebhookCommand::Deliveries {
            db,
            id,
            limit,
            format,
        } => {
            let store = open_existing_history(&ws, &db)?;
            if !owned(&store, id)? {
                return Ok(no_webhook(&store, id));
            }
            let list = store.deliveries(id, None, limit.clamp(1, 1000))?;
            match format {
                ListFormat::Json => {
                    print_json(&list)?;
                }
                ListFormat::Human => {
                    let mut out = String::new();
                    if list.is_empty() {
                        let _ = writeln!(out, "no deliveries for webhook {id}");
                    }
                    for d in &list {
                        let _ = writeln!(
                            out,
                            "{:>6}  {}  {:<27}  {:<9}  {} attempt(s)",
                            d.id,
                            flake_core::meta::format_time(d.created_at),
                            d.event_type,
                            d.state,
                            d.attempts
                        );
                        for a in &d.history {
                            let status = a.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
                            let _ = writeln!(
                                out,
                                "          {}  {status:>3}  {:>6} ms  {}",
                                flake_core::meta::format_time(a.attempted_at),
                                a.latency_ms,
                                a.error.as_deref().unwrap_or("")
                            );
                        }
                    }
                    print_stdout(&out)?;
                }
            }
            Ok(EXIT_OK)
        }
        WebhookCommand::Replay { db, id, delivery } => {
            let mut store = open_existing_history(&ws, &db)?;
            if owned(&store, id)? && store.replay_delivery(id, delivery, now)? {
                print_stderr(&format!(
                    "delivery {delivery} of webhook {id} is queued again, under its original webhook-id\n"
                ));
                Ok(EXIT_OK)
            } else {
                print_stderr(&format!(
                    "webhook {id} of project {} has no finished delivery {delivery}\n",
                    store.project()
                ));
                Ok(EXIT_GATE_FAILED)
            }
        }
        WebhookCommand::Verify { .. } => unreachable!("handled before the workspace is read"),
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
                Ok(no_webhook(&store, id))
            }
        }
    }
}

/// `webhook verify`: the body from stdin.
fn verify(
    secret: &str,
    id: &str,
    timestamp: i64,
    signature: &str,
    tolerance: std::time::Duration,
) -> Result<u8, Error> {
    use std::io::Read;
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;
    let now = flake_core::meta::now_ms() / 1000;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    match flake_core::webhooks::verify(secret, id, timestamp, &body, signature, now, tolerance) {
        Ok(()) => {
            print_stderr("verified: the signature matches and the timestamp is fresh\n");
            Ok(EXIT_OK)
        }
        Err(flake_core::webhooks::VerifyError::Secret(e)) => Err(Box::new(Usage(e.to_string()))),
        Err(e) => {
            print_stderr(&format!("not verified: {e}\n"));
            Ok(EXIT_GATE_FAILED)
        }
    }
}

/// `webhook test`: queues a ping, then waits for its delivery's fate.
fn test(
    store: &mut flake_core::store::Store,
    id: i64,
    wait: std::time::Duration,
) -> Result<u8, Error> {
    let Some(msg_id) = store.enqueue_ping(id, flake_core::meta::now_ms())? else {
        return Ok(no_webhook(store, id));
    };
    print_stderr(&format!(
        "queued ping {msg_id} for webhook {id}; waiting for a server to deliver it\n"
    ));
    let deadline = std::time::Instant::now() + wait;
    loop {
        let found = store
            .deliveries(id, None, 20)?
            .into_iter()
            .find(|d| d.msg_id == msg_id);
        if let Some(d) = &found
            && let Some(last) = d.history.last()
            && (d.state != "pending" || last.error.is_some())
        {
            let status = last
                .status
                .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
            if d.state == "delivered" {
                print_stdout(&format!(
                    "delivered {msg_id}: {status} in {} ms\n",
                    last.latency_ms
                ))?;
                return Ok(EXIT_OK);
            }
            print_stdout(&format!(
                "not delivered {msg_id}: {status} in {} ms: {}{}\n",
                last.latency_ms,
                last.error.as_deref().unwrap_or("failed"),
                if d.state == "pending" {
                    " (it will be retried)"
                } else {
                    ""
                }
            ))?;
            return Ok(EXIT_GATE_FAILED);
        }
        if std::time::Instant::now() >= deadline {
            print_stdout(&format!(
                "not delivered {msg_id} within {} s: is `cargo flake serve` running on this database? \
                 The ping stays queued and goes out when one is\n",
                wait.as_secs()
            ))?;
            return Ok(EXIT_GATE_FAILED);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Says that the project has no endpoint `id`; the exit code for it.
fn no_webhook(store: &flake_core::store::Store, id: i64) -> u8 {
    print_stderr(&format!(
        "project {} has no webhook {id}\n",
        store.project()
    ));
    EXIT_GATE_FAILED
}

/// Whether endpoint `id` belongs to the store's project: one project's
/// command never touches another's endpoints.
fn owned(store: &flake_core::store::Store, id: i64) -> Result<bool, Error> {
    Ok(store
        .webhooks(Some(store.project()))?
        .iter()
        .any(|e| e.id == id))
}
