//! `scaidrive ws`: a minimal WebSocket client for the sync and realtime
//! sockets, so trying them needs no third-party tool.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Arguments of `scaidrive ws`.
#[derive(Debug, clap::Args)]
pub struct WsArgs {
    /// Socket URL, e.g. `ws://localhost:8000/api/v1/sync/ws/laptop-1?token=...`.
    pub url: String,
    /// A text frame to send once connected (repeatable; sent in order).
    #[arg(long = "send")]
    pub send: Vec<String>,
    /// Stop after this many received frames (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub frames: usize,
    /// Stop after this many seconds (0 = run until the server closes or Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
}

/// Connects, sends the given frames and prints every text frame received,
/// one per line, until a limit is reached or the server closes.
pub async fn run(args: WsArgs) -> Result<(), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(args.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redact_token(&args.url)))?;
    for frame in &args.send {
        ws.send(Message::Text(frame.clone().into()))
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
    }
    let deadline =
        (args.seconds > 0).then(|| tokio::time::Instant::now() + Duration::from_secs(args.seconds));
    let mut received = 0usize;
    loop {
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, ws.next()).await.ok(),
                None => Some(ws.next().await),
            }
        };
        let msg = tokio::select! {
            m = next => m,
            _ = tokio::signal::ctrl_c() => None,
        };
        match msg {
            None | Some(None) => break,
            Some(Some(Err(e))) => return Err(format!("socket error: {e}")),
            Some(Some(Ok(Message::Text(t)))) => {
                println!("{t}");
                received += 1;
            }
            Some(Some(Ok(Message::Close(frame)))) => {
                if let Some(f) = frame {
                    eprintln!("closed: {} {}", u16::from(f.code), f.reason);
                }
                break;
            }
            Some(Some(Ok(_))) => {}
        }
        if args.frames > 0 && received >= args.frames {
            break;
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// The URL with its `token` query value hidden, for error messages.
fn redact_token(url: &str) -> String {
    match url.split_once("token=") {
        Some((head, tail)) => {
            let rest = tail.find('&').map(|i| &tail[i..]).unwrap_or("");
            format!("{head}token=...{rest}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_token;

    #[test]
    fn the_token_never_reaches_an_error_message() {
        assert_eq!(
            redact_token("ws://h/a?token=abc&x=1"),
            "ws://h/a?token=...&x=1"
        );
        assert_eq!(redact_token("ws://h/a?token=abc"), "ws://h/a?token=...");
        assert_eq!(redact_token("ws://h/a"), "ws://h/a");
    }
}
