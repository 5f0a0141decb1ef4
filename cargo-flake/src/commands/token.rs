//! `cargo flake token`: API tokens of the team service.

use crate::commands::print_json;
use std::fmt::Write;

use flake_core::quarantine::policy::{parse_date, start_of_day};
use flake_core::tokens::{self, Role};

use super::{
    Error, Usage, open_existing_history, open_history, print_stderr, print_stdout, show_store,
    workspace,
};
use crate::cli::{ColorChoice, ListFormat, TokenCommand, TokenRole};
use crate::style::{Styles, paint};
use crate::{EXIT_GATE_FAILED, EXIT_OK};

/// Runs a `token` subcommand.
pub fn run(cmd: TokenCommand, color: ColorChoice) -> Result<u8, Error> {
    let (_, ws) = workspace()?;
    let now = flake_core::meta::now_ms();
    match cmd {
        TokenCommand::Create {
            db,
            role,
            expires,
            name,
        } => {
            let expires_at = match expires.as_deref() {
                None => None,
                Some(text) => {
                    let day = parse_date(text).ok_or_else(|| {
                        Usage(format!("--expires `{text}`: expected a date as YYYY-MM-DD"))
                    })?;
                    let at = start_of_day(day);
                    if at <= now {
                        return Err(Box::new(Usage(format!(
                            "--expires {text} is not in the future: the token would never work"
                        ))));
                    }
                    Some(at)
                }
            };
            let role = match role {
                TokenRole::Upload => Role::Upload,
                TokenRole::Read => Role::Read,
                TokenRole::Admin => Role::Admin,
            };
            let mut store = open_history(&ws, &db)?;
            let project = store.project().to_owned();
            let created =
                tokens::create(&mut store, &project, role, name.as_deref(), expires_at, now)?;
            // The token alone on stdout, so `TOKEN=$(cargo flake token create ...)` works.
            print_stdout(&format!("{}\n", created.token))?;
            print_stderr(&format!(
                "created {role} token {} for project {project} in {}; it is shown only this once\n",
                created.record.id,
                show_store(&store)
            ));
            Ok(EXIT_OK)
        }
        TokenCommand::List {
            db,
            all_projects,
            format,
        } => {
            let store = open_existing_history(&ws, &db)?;
            let list = store.tokens((!all_projects).then(|| store.project()))?;
            match format {
                ListFormat::Json => {
                    print_json(&list)?;
                }
                ListFormat::Human => {
                    let styles = Styles::stdout(color);
                    let mut out = String::new();
                    if list.is_empty() {
                        let _ = writeln!(out, "no tokens");
                    }
                    for t in &list {
                        let state = if t.revoked_at.is_some() {
                            paint(styles.fail, "revoked")
                        } else if !t.active(now) {
                            paint(styles.fail, "expired")
                        } else {
                            paint(styles.pass, "active")
                        };
                        let expires = t
                            .expires_at
                            .map(|e| format!(", expires {}", day(e)))
                            .unwrap_or_default();
                        let _ = writeln!(
                            out,
                            "{:>5}  {:<6}  {state}  {}  created {}{expires}{}",
                            t.id,
                            t.role.name(),
                            t.project,
                            day(t.created_at),
                            t.name
                                .as_deref()
                                .map(|n| format!("  ({n})"))
                                .unwrap_or_default()
                        );
                    }
                    print_stdout(&out)?;
                }
            }
            Ok(EXIT_OK)
        }
        TokenCommand::Revoke { db, id } => {
            let mut store = open_existing_history(&ws, &db)?;
            if store.revoke_token(id, now)? {
                print_stderr(&format!("revoked token {id}\n"));
                Ok(EXIT_OK)
            } else {
                let why = match store.token(id)? {
                    Some(_) => "was revoked already",
                    None => "does not exist",
                };
                print_stderr(&format!("token {id} {why}\n"));
                Ok(EXIT_GATE_FAILED)
            }
        }
    }
}

/// `YYYY-MM-DD` (UTC) of Unix ms.
fn day(ms: i64) -> String {
    flake_core::quarantine::policy::date_of(ms).to_string()
}
