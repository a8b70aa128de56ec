//! One small template per notification kind: a plain-text and an HTML part
//! (sent as multipart/alternative) around the message's text and its link.
//! Every interpolated value is HTML-escaped in the HTML part.

use scaidrive_projections::outbox::OutboxRow;

/// A message ready to be put in an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The fixed words of one kind of message.
struct Template {
    heading: &'static str,
    /// Label of the link.
    action: &'static str,
    /// Why the recipient gets this message.
    reason: &'static str,
}

fn template(kind: &str) -> Template {
    match kind {
        "invitation" => Template {
            heading: "You are invited to a share",
            action: "See your invitations",
            reason: "someone invited this address to a share",
        },
        "link-email-code" => Template {
            heading: "Your one-time access code",
            action: "Open the shared item",
            reason: "this address asked for a code to open a shared link; if it was not you, ignore this message",
        },
        "link-activity" => Template {
            heading: "Activity on your shared link",
            action: "See the link",
            reason: "a link you manage asks to be notified of its use",
        },
        "quota-warning" => Template {
            heading: "Storage quota warning",
            action: "See the usage",
            reason: "you own or administer the storage this quota limits",
        },
        "member-added" => Template {
            heading: "You were added to a share",
            action: "Open the share",
            reason: "a share's administrator added you to it",
        },
        _ => Template {
            heading: "A notification from ScaiDrive",
            action: "Open ScaiDrive",
            reason: "your account is on a ScaiDrive server",
        },
    }
}

/// Renders a queued message; `base_url` (no trailing slash) is where
/// recipients reach the server.
pub fn render(m: &OutboxRow, base_url: &str) -> Rendered {
    let t = template(&m.kind);
    let url = m.link_path.as_deref().map(|p| format!("{base_url}{p}"));
    let mut text = format!("{}\n\n{}\n", t.heading, m.body.trim());
    if let Some(u) = &url {
        text.push_str(&format!("\n{}: {u}\n", t.action));
    }
    text.push_str(&format!("\n-- \nSent by ScaiDrive because {}.\n", t.reason));
    let paragraphs: String = m
        .body
        .trim()
        .split("\n\n")
        .map(|p| format!("<p>{}</p>\n", escape(p).replace('\n', "<br>\n")))
        .collect();
    let link = url
        .as_deref()
        .map(|u| {
            format!(
                "<p><a href=\"{}\" style=\"color:#1a5fb4\">{}</a></p>\n",
                escape(u),
                escape(t.action)
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body style=\"font-family:sans-serif;line-height:1.5;color:#222;max-width:40em\">\n\
         <h1 style=\"font-size:1.25em\">{heading}</h1>\n{paragraphs}{link}\
         <p style=\"color:#777;font-size:.85em\">Sent by ScaiDrive because {reason}.</p>\n\
         </body></html>\n",
        title = escape(&m.subject),
        heading = escape(t.heading),
        reason = escape(t.reason),
    );
    Rendered {
        subject: m.subject.clone(),
        text,
        html,
    }
}

/// Escapes text for HTML content and double- or single-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn row(kind: &str, body: &str, link_path: Option<&str>) -> OutboxRow {
        OutboxRow {
            id: "evt:bob@ext.test".into(),
            tenant_id: None,
            kind: kind.into(),
            recipient: "bob@ext.test".into(),
            subject: "Invitation to '<b>Q3</b>'".into(),
            body: body.into(),
            link_path: link_path.map(str::to_owned),
            source_event_id: None,
            created_at: Utc::now(),
            attempts: 0,
            status: "pending".into(),
            next_attempt_at: None,
            claimed_by: None,
            claimed_at: None,
            last_error: None,
            sent_at: None,
            dead_at: None,
        }
    }

    #[test]
    fn both_parts_carry_the_text_and_the_public_link() {
        let r = render(
            &row(
                "invitation",
                "You have been invited.",
                Some("/api/v1/users/me/invitations"),
            ),
            "https://drive.example.com",
        );
        let url = "https://drive.example.com/api/v1/users/me/invitations";
        assert!(r.text.contains("You have been invited."));
        assert!(r.text.contains(&format!("See your invitations: {url}")));
        assert!(r.html.contains(&format!("<a href=\"{url}\"")));
        assert!(r.html.contains("You are invited to a share"));
    }

    #[test]
    fn interpolated_values_are_escaped_in_html_only() {
        let r = render(
            &row(
                "member-added",
                "Share '<script>alert(1)</script>' & more",
                Some("/x?a=1&b=\"2\""),
            ),
            "http://h",
        );
        assert!(r.text.contains("<script>"));
        assert!(!r.html.contains("<script>"));
        assert!(r
            .html
            .contains("&#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39; &amp; more"));
        assert!(r
            .html
            .contains("href=\"http://h/x?a=1&amp;b=&quot;2&quot;\""));
        assert!(r
            .html
            .contains("<title>Invitation to &#39;&lt;b&gt;Q3&lt;/b&gt;&#39;</title>"));
    }
}
