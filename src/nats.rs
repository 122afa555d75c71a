//! What the `nats` source and sink share: server URLs, authentication, the
//! connection (with its reconnects logged), and finding or creating the
//! JetStream stream.
//!
//! Secrets (passwords, tokens, seeds, credentials in a URL) never reach a log
//! line or an error: URLs are shown with their user information replaced.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, context::GetStreamErrorKind, stream};
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use serde::Deserialize;

use crate::config::Secret;

/// `auth`: how to authenticate to the NATS server. Exactly one method:
/// `{ credentials_file }`, `{ user, password }`, `{ token }` or `{ nkey_seed }`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsAuth {
    /// A `.creds` file (user JWT and NKey seed), as `nats` CLI contexts use.
    pub credentials_file: Option<PathBuf>,
    /// User name, with `password`.
    pub user: Option<String>,
    /// Password, with `user`.
    pub password: Option<Secret>,
    /// Authentication token.
    pub token: Option<Secret>,
    /// NKey seed (`SU…`).
    pub nkey_seed: Option<Secret>,
}

impl NatsAuth {
    /// Exactly one complete method, none of it empty.
    pub fn check(&self) -> Result<(), String> {
        let methods = [
            self.credentials_file.is_some(),
            self.user.is_some() || self.password.is_some(),
            self.token.is_some(),
            self.nkey_seed.is_some(),
        ];
        let one_of = "set one of `auth.credentials_file`, `auth.user` with `auth.password`, `auth.token` or `auth.nkey_seed`";
        match methods.iter().filter(|m| **m).count() {
            0 => return Err(format!("`auth` is empty; {one_of}")),
            1 => {}
            _ => return Err(format!("`auth` sets more than one method; {one_of}")),
        }
        if let Some(path) = &self.credentials_file
            && path.as_os_str().is_empty()
        {
            return Err("`auth.credentials_file` is empty".into());
        }
        match (&self.user, &self.password) {
            (Some(_), None) => return Err("`auth.user` needs `auth.password`".into()),
            (None, Some(_)) => return Err("`auth.password` needs `auth.user`".into()),
            (Some(user), _) if user.is_empty() => return Err("`auth.user` is empty".into()),
            (_, Some(password)) if password.is_empty() => {
                return Err("`auth.password` is empty".into());
            }
            _ => {}
        }
        if self.token.as_ref().is_some_and(Secret::is_empty) {
            return Err("`auth.token` is empty".into());
        }
        // A wrong kind of key would only show up as a failed handshake.
        if let Some(seed) = &self.nkey_seed
            && !seed.expose().starts_with("SU")
        {
            return Err("`auth.nkey_seed` is not a user NKey seed (those start with `SU`)".into());
        }
        Ok(())
    }

    async fn options(&self) -> Result<ConnectOptions, String> {
        if let Some(path) = &self.credentials_file {
            // The io error names the problem (not found, permission), never the contents.
            return ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| {
                    format!("cannot use `auth.credentials_file` {}: {e}", path.display())
                });
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            return Ok(ConnectOptions::with_user_and_password(
                user.clone(),
                password.expose().to_owned(),
            ));
        }
        if let Some(token) = &self.token {
            return Ok(ConnectOptions::with_token(token.expose().to_owned()));
        }
        if let Some(seed) = &self.nkey_seed {
            return Ok(ConnectOptions::with_nkey(seed.expose().to_owned()));
        }
        Ok(ConnectOptions::new())
    }
}

/// The servers of a `url` setting: one URL or a comma-separated list
/// (`nats://host:4222`; `nats://` is assumed when no scheme is given).
pub fn server_urls(url: &str) -> Result<Vec<ServerAddr>, String> {
    let urls: Vec<&str> = url.split(',').map(str::trim).collect();
    if urls.iter().all(|u| u.is_empty()) {
        return Err("`url` is empty; set it to e.g. \"nats://127.0.0.1:4222\"".into());
    }
    urls.iter()
        .map(|u| {
            if u.is_empty() {
                return Err(
                    "`url` has an empty entry; separate server URLs with single commas".into(),
                );
            }
            u.parse::<ServerAddr>()
                .map_err(|e| format!("`url` {:?} is not a NATS server URL: {e}", redact(u)))
        })
        .collect()
}

/// `url` as it may be shown: user information (`user:password@`, `token@`)
/// replaced by `***`.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|u| {
            let u = u.trim();
            let start = u.find("://").map_or(0, |i| i + 3);
            let host_end = u[start..].find('/').map_or(u.len(), |i| start + i);
            match u[start..host_end].rfind('@') {
                Some(at) => format!("{}***{}", &u[..start], &u[start + at..]),
                None => u.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks a stream or consumer name (JetStream forbids these characters, as
/// they would change the API subject the name is part of).
pub fn check_name(key: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("`{key}` is empty"));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "`{key}` {name:?} must not contain whitespace, `.`, `*`, `>`, `/` or `\\`"
        ));
    }
    Ok(())
}

/// Checks a subject; `wildcards`: whether `*` and `>` tokens are allowed (a
/// filter) or not (a subject to publish to).
pub fn check_subject(key: &str, subject: &str, wildcards: bool) -> Result<(), String> {
    if subject.is_empty() {
        return Err(format!("`{key}` is empty"));
    }
    if subject.chars().any(char::is_whitespace) {
        return Err(format!("`{key}` {subject:?} must not contain whitespace"));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return Err(format!(
            "`{key}` {subject:?} has an empty token (a leading, trailing or doubled `.`)"
        ));
    }
    let wild = |t: &&str| *t == "*" || *t == ">";
    if !wildcards && tokens.iter().any(wild) {
        return Err(format!(
            "`{key}` {subject:?} has a wildcard; events are published to one subject"
        ));
    }
    if tokens[..tokens.len() - 1].contains(&">") {
        return Err(format!(
            "`{key}` {subject:?}: `>` may only be the last token"
        ));
    }
    Ok(())
}

/// What a connection needs besides its auth.
pub struct Connect<'a> {
    /// The `url` setting, already checked by [`server_urls`].
    pub url: &'a str,
    /// The `auth` setting.
    pub auth: Option<&'a NatsAuth>,
    /// The name the server shows for this connection.
    pub name: &'a str,
    /// The component, for log lines about the connection.
    pub component: &'a str,
}

/// Connect to the servers of `url`. The first connection is tried once per
/// server so that a wrong URL fails at start with a clear error; after that
/// the client reconnects by itself, forever, and every disconnect is logged.
pub async fn connect(c: &Connect<'_>) -> Result<Client, String> {
    let servers = server_urls(c.url)?;
    let options = match c.auth {
        Some(auth) => auth.options().await?,
        None => ConnectOptions::new(),
    };
    let component = c.component.to_owned();
    let options = options
        .name(c.name)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| {
            let component = component.clone();
            async move { log_event(&component, event) }
        });
    options.connect(servers).await.map_err(|e| {
        let hint = match e.kind() {
            async_nats::ConnectErrorKind::AuthorizationViolation
            | async_nats::ConnectErrorKind::Authentication => "; check `auth`",
            _ => "",
        };
        format!("cannot connect to NATS at {}: {e}{hint}", redact(c.url))
    })
}

fn log_event(component: &str, event: Event) {
    match event {
        Event::Connected => tracing::info!(component, "connected to NATS"),
        Event::Disconnected => {
            tracing::warn!(component, "disconnected from NATS; reconnecting")
        }
        Event::LameDuckMode => {
            tracing::warn!(
                component,
                "the NATS server is shutting down (lame duck mode)"
            )
        }
        Event::SlowConsumer(_) => {
            tracing::warn!(component, "NATS: this client is reading too slowly")
        }
        Event::ServerError(e) => tracing::warn!(component, "NATS server error: {e}"),
        Event::ClientError(e) => tracing::warn!(component, "NATS client error: {e}"),
        Event::Draining | Event::Closed => tracing::debug!(component, "NATS connection {event}"),
    }
}

/// The key-value bucket `config.bucket`, over a connection made as `c` says. When it does not
/// exist: created with `config` if `create`, else an error. Another instance creating it at the
/// same moment is not an error: its bucket is opened.
pub async fn key_value(
    c: &Connect<'_>,
    config: jetstream::kv::Config,
    create: bool,
) -> Result<jetstream::kv::Store, String> {
    let js = jetstream::new(connect(c).await?);
    let name = config.bucket.clone();
    match js.get_key_value(&name).await {
        Ok(store) => Ok(store),
        Err(e) if !create => Err(format!("cannot open the key-value bucket `{name}`: {e}")),
        Err(_) => match js.create_key_value(config).await {
            Ok(store) => Ok(store),
            Err(e) => js
                .get_key_value(&name)
                .await
                .map_err(|_| format!("cannot open or create the key-value bucket `{name}`: {e}")),
        },
    }
}

/// The stream `name`. When it does not exist: created with `subjects =
/// [subject]` if `create` (and `subject` is given), else an error that says
/// how to create it.
pub async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    subject: Option<&str>,
    create: bool,
    component: &str,
) -> Result<jetstream::stream::Stream, String> {
    match lookup_stream(js, name).await? {
        Some(found) => return Ok(found),
        None if !create => {
            let subjects = subject.unwrap_or("SUBJECT");
            return Err(format!(
                "JetStream stream `{name}` does not exist; create it (e.g. `nats stream add {name} --subjects '{subjects}' --defaults`) or set `create_stream = true`"
            ));
        }
        None => {}
    }
    let Some(subject) = subject else {
        return Err(format!(
            "JetStream stream `{name}` does not exist, and creating it needs `subject`"
        ));
    };
    let config = stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        ..Default::default()
    };
    match js.create_stream(config).await {
        Ok(created) => {
            tracing::info!(
                component,
                stream = name,
                subject,
                "created JetStream stream"
            );
            Ok(created)
        }
        // Another instance may have created it in the meantime.
        Err(e) => match lookup_stream(js, name).await {
            Ok(Some(found)) => Ok(found),
            _ => Err(format!("cannot create JetStream stream `{name}`: {e}")),
        },
    }
}

async fn lookup_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<jetstream::stream::Stream>, String> {
    match js.get_stream(name).await {
        Ok(found) => Ok(Some(found)),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(format!(
                "cannot look up JetStream stream `{name}` (is JetStream enabled on the server?): {e}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(toml_text: &str) -> NatsAuth {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn exactly_one_complete_auth_method_is_accepted() {
        for ok in [
            "credentials_file = \"/etc/nats/app.creds\"",
            "user = \"u\"\npassword = \"p\"",
            "token = \"t\"",
            "nkey_seed = \"SU\"",
        ] {
            assert!(auth(ok).check().is_ok(), "{ok}");
        }
        let e = auth("").check().unwrap_err();
        assert!(e.contains("`auth` is empty"), "{e}");
        let e = auth("token = \"t\"\nnkey_seed = \"s\"")
            .check()
            .unwrap_err();
        assert!(e.contains("more than one"), "{e}");
        let e = auth("user = \"u\"").check().unwrap_err();
        assert_eq!(e, "`auth.user` needs `auth.password`");
        let e = auth("password = \"hunter2\"").check().unwrap_err();
        assert_eq!(e, "`auth.password` needs `auth.user`");
        let e = auth("token = \"\"").check().unwrap_err();
        assert_eq!(e, "`auth.token` is empty");
        assert!(toml::from_str::<NatsAuth>("tokn = \"t\"").is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let a = auth("user = \"u\"\npassword = \"hunter2\"");
        assert!(!format!("{a:?}").contains("hunter2"));
        let a = auth("nkey_seed = \"SUSECRETSEED\"");
        assert!(!format!("{a:?}").contains("SUSECRET"));
    }

    #[test]
    fn urls_are_a_comma_separated_list_and_errors_hide_credentials() {
        assert_eq!(
            server_urls("nats://a:4222, b:4223").unwrap().len(),
            2,
            "a scheme is optional"
        );
        assert!(server_urls("").unwrap_err().contains("`url` is empty"));
        assert!(server_urls("a:1,,b:2").unwrap_err().contains("empty entry"));
        let e = server_urls("http://user:hunter2@host:4222").unwrap_err();
        assert!(e.starts_with("`url` \"http://***@host:4222\""), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn redact_replaces_user_information_only() {
        assert_eq!(
            redact("nats://u:p@h:4222,tls://tok@h2/x@y,h3:4222"),
            "nats://***@h:4222,tls://***@h2/x@y,h3:4222"
        );
        assert_eq!(redact("u:p@h"), "***@h");
    }

    #[test]
    fn names_and_subjects_are_checked() {
        assert!(check_name("stream", "EVENTS_1").is_ok());
        assert_eq!(check_name("durable", "").unwrap_err(), "`durable` is empty");
        assert!(
            check_name("stream", "a.b")
                .unwrap_err()
                .contains("`stream`")
        );
        assert!(check_subject("subject", "events.>", true).is_ok());
        assert!(check_subject("subject", "events.*.x", true).is_ok());
        assert!(
            check_subject("subject", "events.>", false)
                .unwrap_err()
                .contains("wildcard")
        );
        assert!(check_subject("subject", "a..b", true).is_err());
        assert!(check_subject("subject", "a.>.b", true).is_err());
        assert!(check_subject("subject", "a b", true).is_err());
    }
}
