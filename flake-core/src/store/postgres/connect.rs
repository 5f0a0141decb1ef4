//! From a `postgres://` URL to a connected client: the password from the
//! URL, `PGPASSWORD` or the passfile (rust-postgres reads neither), TLS
//! refused clearly, and errors that show the URL only with its password masked.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use postgres::config::Host;
use postgres::{Client, Config, NoTls};

use crate::env_vars;
use crate::store::{StoreError, mask_password};

/// How long to wait for the server before giving up, unless the URL says
/// (`connect_timeout=`): a CI job should fail, not hang, on a dead host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the server named by `url` (not yet checking the schema).
pub(super) fn connect(url: &str) -> Result<Client, StoreError> {
    let shown = mask_password(url);
    refuse_tls(url, &shown)?;
    let mut config = Config::from_str(url).map_err(|source| StoreError::Open {
        path: PathBuf::from(&shown),
        source: Box::new(source),
    })?;
    if config.get_password().is_none()
        && let Some(password) = password_for(&config)
    {
        config.password(password);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("cargo-flake");
    }
    config.connect(NoTls).map_err(|e| connect_error(e, &shown))
}

/// This build has no TLS stack: a URL that requires TLS is refused before
/// anything is sent in the clear. `prefer` (the default) and `disable` connect
/// without TLS, as libpq does when the server offers none.
fn refuse_tls(url: &str, shown: &str) -> Result<(), StoreError> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(());
    };
    for pair in query.split('&') {
        if let Some((key, value)) = pair.split_once('=')
            && key.eq_ignore_ascii_case("sslmode")
            && matches!(
                value.to_ascii_lowercase().as_str(),
                "require" | "verify-ca" | "verify-full"
            )
        {
            return Err(StoreError::Unsupported {
                db: shown.to_owned(),
                what: "TLS connections (`sslmode=require` and stricter)",
            });
        }
    }
    Ok(())
}

/// A refused sign-in becomes [`StoreError::Auth`], one line without the
/// password; anything else [`StoreError::Open`].
fn connect_error(e: postgres::Error, shown: &str) -> StoreError {
    // Class 28 is "invalid authorization specification" (wrong password, no
    // pg_hba.conf entry, unknown role).
    if let Some(db) = e.as_db_error()
        && db.code().code().starts_with("28")
    {
        return StoreError::Auth {
            db: shown.to_owned(),
            reason: db.message().to_owned(),
        };
    }
    // The client's own error when the server asks for a password it lacks.
    let cause = std::error::Error::source(&e).map(ToString::to_string);
    if cause.as_deref() == Some("password missing") {
        return StoreError::Auth {
            db: shown.to_owned(),
            reason: "the server asks for a password and none was given".into(),
        };
    }
    StoreError::Open {
        path: PathBuf::from(shown),
        source: Box::new(e),
    }
}

/// The password libpq would use when the URL has none: `PGPASSWORD`, else
/// the first matching line of the passfile.
fn password_for(config: &Config) -> Option<String> {
    let file = std::env::var_os(env_vars::PGPASSFILE)
        .map(PathBuf::from)
        .or_else(|| home_dir().map(|h| h.join(".pgpass")));
    password_from(
        config,
        std::env::var_os(env_vars::PGPASSWORD),
        file.as_deref(),
    )
}

/// [`password_for`] with the environment's values passed in.
fn password_from(
    config: &Config,
    pgpassword: Option<std::ffi::OsString>,
    passfile: Option<&Path>,
) -> Option<String> {
    if let Some(password) = pgpassword {
        return Some(password.to_string_lossy().into_owned());
    }
    let file = passfile?;
    if !private(file) {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let user = config
        .get_user()
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())?;
    let host = match config.get_hosts().first() {
        // libpq matches a socket directory as `localhost`.
        Some(Host::Tcp(host)) => host.clone(),
        _ => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config.get_dbname().unwrap_or(&user).to_owned();
    passfile_lookup(&text, [&host, &port.to_string(), &dbname, &user])
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// libpq ignores a passfile that others can read (on Unix); so do we, so
/// that `psql` and cargo-flake agree on which password is used.
#[cfg(unix)]
fn private(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o077 == 0)
}

#[cfg(not(unix))]
fn private(file: &Path) -> bool {
    file.is_file()
}

/// The password of the first line of a passfile whose host, port, database
/// and user fields match `wanted` (`*` matches anything); `\:` and `\\` are
/// escapes, `#` starts a comment line, as in libpq.
fn passfile_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_fields(line);
        let [host, port, db, user, password] = fields.as_slice() else {
            continue;
        };
        let matches = [host, port, db, user]
            .iter()
            .zip(wanted)
            .all(|(field, want)| field.as_str() == "*" || field.as_str() == want);
        if matches {
            return Some(password.clone());
        }
    }
    None
}

/// Splits a passfile line on unescaped `:`, unescaping `\x` to `x`.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passfile_lines_match_like_libpq() {
        let text = "# a comment\n\
                    db.internal:5432:flake:ci:first\n\
                    *:5432:*:ci:wild\\:card\n\
                    short:line\n\
                    *:*:*:*:any\n";
        let look = |host, port, db, user| passfile_lookup(text, [host, port, db, user]);
        assert_eq!(
            look("db.internal", "5432", "flake", "ci").as_deref(),
            Some("first")
        );
        assert_eq!(
            look("other", "5432", "x", "ci").as_deref(),
            Some("wild:card")
        );
        assert_eq!(look("other", "6543", "x", "ci").as_deref(), Some("any"));
        assert_eq!(passfile_lookup("h:1:d:u:p\n", ["h", "2", "d", "u"]), None);
        assert_eq!(
            split_fields(r"a\\b:c\:d:e"),
            vec![r"a\b".to_owned(), "c:d".into(), "e".into()]
        );
    }

    #[test]
    fn the_password_comes_from_pgpassword_then_a_private_passfile() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "db.internal:5432:other:ci:nope\ndb.internal:*:flake:ci:from-file\n",
        )
        .unwrap();
        let config = Config::from_str("postgres://ci@db.internal/flake").unwrap();
        let env = Some(std::ffi::OsString::from("from-env"));
        assert_eq!(
            password_from(&config, env, Some(&file)).as_deref(),
            Some("from-env")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(
                password_from(&config, None, Some(&file)),
                None,
                "others can read it"
            );
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(
            password_from(&config, None, Some(&file)).as_deref(),
            Some("from-file")
        );
        let elsewhere = Config::from_str("postgres://ci@db.internal/elsewhere").unwrap();
        assert_eq!(password_from(&elsewhere, None, Some(&file)), None);
        assert_eq!(password_from(&config, None, None), None);
    }

    #[test]
    fn a_refused_sign_in_is_one_line_without_the_password() {
        let Some(db) = crate::store::postgres::testing::TestDatabase::create() else {
            return;
        };
        let server = Config::from_str(db.url()).unwrap();
        let host = match &server.get_hosts()[0] {
            Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            Host::Unix(path) => path.display().to_string(),
        };
        let port = server.get_ports().first().copied().unwrap_or(5432);
        let url = format!("postgres://flake_no_such_role:s3cret@{host}:{port}/postgres");
        let Err(err) = connect(&url) else {
            panic!("an unknown role signed in");
        };
        assert_eq!(
            err.to_string(),
            format!(
                "could not sign in to `postgres://flake_no_such_role:***@{host}:{port}/postgres`: \
                 role \"flake_no_such_role\" does not exist (the password comes from the URL, \
                 `PGPASSWORD` or the passfile `PGPASSFILE`, default ~/.pgpass)"
            )
        );
        assert!(
            std::error::Error::source(&err).is_none(),
            "one line, no cause chain"
        );
    }

    #[test]
    fn urls_that_require_tls_are_refused_without_their_password() {
        let Err(err) = connect("postgres://ci:s3cret@127.0.0.1:1/db?sslmode=require") else {
            panic!("a URL requiring TLS connected");
        };
        let shown = err.to_string();
        assert_eq!(
            shown,
            "`postgres://ci:***@127.0.0.1:1/db?sslmode=require`: TLS connections \
             (`sslmode=require` and stricter) are not supported by this build of cargo-flake"
        );
        assert!(refuse_tls("postgres://h/db?sslmode=prefer", "").is_ok());
        assert!(refuse_tls("postgres://h/db?sslmode=VERIFY-FULL", "").is_err());
    }
}
