//! Where mail goes: an SMTP relay (`SCAIDRIVE_SMTP_URL`) or, without one,
//! `.eml` files under `{data_dir}/mail/` that a local user can open.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::Config;

/// Longest one SMTP command may take.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a message did not go out.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt (connection refused, 4xx, timeout...).
    #[error("{0}")]
    Transient(String),
    /// Will fail the same way again (5xx, an address that is no address).
    #[error("{0}")]
    Permanent(String),
}

/// A configured way out for mail.
pub enum Transport {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// The relay as configured, without its password.
        shown: String,
    },
    Files(PathBuf),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Smtp { shown, .. } => write!(f, "Smtp({shown})"),
            Transport::Files(dir) => write!(f, "Files({})", dir.display()),
        }
    }
}

impl Transport {
    /// The transport `config` asks for: SMTP when `smtp_url` is set, else
    /// files under `{data_dir}/mail/`.
    pub fn from_config(config: &Config) -> Result<Transport, String> {
        let Some(shown) = &config.smtp_url else {
            return Ok(Transport::Files(config.data_dir.join("mail")));
        };
        let u = url::Url::parse(shown)
            .map_err(|e| format!("SCAIDRIVE_SMTP_URL {shown} is not a URL: {e}"))?;
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("SCAIDRIVE_SMTP_URL {shown} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let (default_port, tls) = match u.scheme() {
            "smtp" => (25, Security::Opportunistic),
            "smtp+starttls" => (587, Security::StartTls),
            "smtps" => (465, Security::Implicit),
            other => {
                return Err(format!(
                    "SCAIDRIVE_SMTP_URL scheme {other}: is not smtp, smtp+starttls or smtps"
                ))
            }
        };
        let params = TlsParameters::new(host.clone())
            .map_err(|e| format!("cannot set up TLS for {host}: {e}"))?;
        let tls = match tls {
            Security::Opportunistic => Tls::Opportunistic(params),
            Security::StartTls => Tls::Required(params),
            Security::Implicit => Tls::Wrapper(params),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(u.port().unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if !u.username().is_empty() {
            let user = percent_encoding::percent_decode_str(u.username())
                .decode_utf8_lossy()
                .into_owned();
            let password = config
                .smtp_password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Transport::Smtp {
            transport: builder.build(),
            shown: shown.clone(),
        })
    }

    /// Sends one message; `id` names its file when writing files.
    pub async fn send(&self, id: &str, message: &lettre::Message) -> Result<(), SendError> {
        match self {
            Transport::Smtp { transport, .. } => match transport.send(message.clone()).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                Err(e) => Err(SendError::Transient(e.to_string())),
            },
            Transport::Files(dir) => {
                let dir = dir.clone();
                let path = dir.join(file_name(id));
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &bytes))
                    .await
                    .map_err(|e| SendError::Transient(format!("writing the mail file: {e}")))?
                    .map_err(|e| SendError::Transient(format!("writing the mail file: {e}")))
            }
        }
    }

    /// Whether the message is known to be out already: for files, whether
    /// its file exists (files appear whole, by rename). A relay cannot be
    /// asked, so for SMTP this is `None`: unknown.
    pub fn delivered(&self, id: &str) -> Option<bool> {
        match self {
            Transport::Smtp { .. } => None,
            Transport::Files(dir) => Some(dir.join(file_name(id)).exists()),
        }
    }
}

enum Security {
    Opportunistic,
    StartTls,
    Implicit,
}

/// The `.eml` file of outbox message `id`: the id with every byte outside
/// `[A-Za-z0-9._@-]` written as `%XX`, so distinct ids get distinct names.
pub fn file_name(id: &str) -> String {
    let mut name = String::with_capacity(id.len() + 4);
    for b in id.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'@' | b'-' => {
                name.push(char::from(b))
            }
            _ => name.push_str(&format!("%{b:02X}")),
        }
    }
    // A leading dot would hide the file.
    if name.starts_with('.') {
        name.replace_range(0..1, "%2E");
    }
    name.push_str(".eml");
    name
}

/// Writes a temporary file beside `path` and renames it into place, so a
/// reader sees the whole message or none.
fn write_atomically(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(".eml")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_ids_apart_and_visible() {
        assert_eq!(
            file_name("evt_01:bob@ext.test"),
            "evt_01%3Abob@ext.test.eml"
        );
        assert_ne!(file_name("a:b"), file_name("a%3Ab"));
        assert_eq!(file_name("../x"), "%2E.%2Fx.eml");
    }

    #[tokio::test]
    async fn smtp_urls_choose_the_relay_and_its_security() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::embedded(dir.path().to_path_buf());
        assert!(matches!(
            Transport::from_config(&c),
            Ok(Transport::Files(_))
        ));
        for ok in [
            "smtp://127.0.0.1:2525",
            "smtp+starttls://mail.example.com",
            "smtps://mailer@mail.example.com",
        ] {
            c.smtp_url = Some(ok.into());
            assert!(Transport::from_config(&c).is_ok(), "{ok}");
        }
        for bad in ["http://mail.example.com", "smtp:relay", "not a url"] {
            c.smtp_url = Some(bad.into());
            assert!(Transport::from_config(&c).is_err(), "{bad}");
        }
    }
}
