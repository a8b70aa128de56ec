//! Text extraction for search: plain text, Markdown, HTML, PDF and Office
//! Open XML (docx, xlsx, pptx).
//!
//! The result is a list of [`Section`]s: runs of text with the page (PDF
//! page, pptx slide) or the heading (Markdown, docx) they sit under, so a
//! chunker can say where a passage came from. Text is capped per file
//! (`max_text_bytes`); what is cut is marked `truncated`.
//!
//! Extraction is CPU work on bytes already read: callers run it on a
//! blocking thread. A malformed document is an [`ExtractError`], never a
//! panic that escapes (the PDF parser is run under `catch_unwind`).

use std::io::{Cursor, Read};

use quick_xml::events::Event;
use quick_xml::Reader;

/// A run of extracted text and where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub text: String,
    /// 1-based PDF page or pptx slide.
    pub page: Option<u32>,
    /// The nearest heading above the text (Markdown, docx).
    pub heading: Option<String>,
}

/// What extraction found in one file.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    pub sections: Vec<Section>,
    /// The text was cut at the cap.
    pub truncated: bool,
}

impl Extracted {
    /// All the text, sections separated by blank lines.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            if let Some(h) = &s.heading {
                if !out.is_empty() {
                    out.push_str("\n\n");
                }
                out.push_str(h);
            }
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&s.text);
        }
        out
    }
}

/// Which extractor a file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Markdown,
    Html,
    Pdf,
    Docx,
    Xlsx,
    Pptx,
}

impl Kind {
    /// From the MIME type, falling back to the name's extension.
    pub fn detect(mime_type: &str, name: &str) -> Option<Kind> {
        let mime = mime_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let by_mime = match mime.as_str() {
            "text/markdown" | "text/x-markdown" => Some(Kind::Markdown),
            "text/html" | "application/xhtml+xml" => Some(Kind::Html),
            "application/pdf" => Some(Kind::Pdf),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
                Some(Kind::Docx)
            }
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Some(Kind::Xlsx),
            "application/vnd.openxmlformats-officedocument.presentationml.presentation" => {
                Some(Kind::Pptx)
            }
            "application/json" | "application/xml" | "application/x-yaml" | "application/yaml" => {
                Some(Kind::Plain)
            }
            m if m.starts_with("text/") => Some(Kind::Plain),
            _ => None,
        };
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        let by_ext = match ext.as_str() {
            "md" | "markdown" => Some(Kind::Markdown),
            "html" | "htm" | "xhtml" => Some(Kind::Html),
            "pdf" => Some(Kind::Pdf),
            "docx" => Some(Kind::Docx),
            "xlsx" => Some(Kind::Xlsx),
            "pptx" => Some(Kind::Pptx),
            "txt" | "text" | "csv" | "tsv" | "log" | "json" | "xml" | "yaml" | "yml" | "toml"
            | "ini" | "rst" => Some(Kind::Plain),
            _ => None,
        };
        // A generic text MIME type loses to a telling extension (`.md`
        // uploaded as text/plain).
        match (by_mime, by_ext) {
            (Some(Kind::Plain), Some(e)) => Some(e),
            (Some(m), _) => Some(m),
            (None, e) => e,
        }
    }

    /// Whether the whole file must be in memory (a container format) rather
    /// than read as a prefix.
    pub fn needs_whole_file(self) -> bool {
        matches!(self, Kind::Pdf | Kind::Docx | Kind::Xlsx | Kind::Pptx)
    }
}

/// Why a file's text could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("not a valid {0} document: {1}")]
    Malformed(&'static str, String),
    #[error("the document parser failed")]
    Panicked,
}

/// Extracts a file's text, at most `cap` bytes of it.
pub fn extract(kind: Kind, bytes: &[u8], cap: usize) -> Result<Extracted, ExtractError> {
    let mut out = Sink::new(cap);
    match kind {
        Kind::Plain => out.push(None, None, &String::from_utf8_lossy(bytes)),
        Kind::Markdown => markdown(&String::from_utf8_lossy(bytes), &mut out),
        Kind::Html => out.push(None, None, &html_text(&String::from_utf8_lossy(bytes))),
        Kind::Pdf => pdf(bytes, &mut out)?,
        Kind::Docx => docx(bytes, &mut out)?,
        Kind::Xlsx => xlsx(bytes, &mut out)?,
        Kind::Pptx => pptx(bytes, &mut out)?,
    }
    Ok(out.done())
}

/// Collects sections up to the cap.
struct Sink {
    left: usize,
    out: Extracted,
}

impl Sink {
    fn new(cap: usize) -> Self {
        Sink {
            left: cap,
            out: Extracted::default(),
        }
    }

    fn full(&self) -> bool {
        self.out.truncated
    }

    fn push(&mut self, page: Option<u32>, heading: Option<&str>, text: &str) {
        let text = text.trim();
        if text.is_empty() || self.full() {
            return;
        }
        let text = if text.len() > self.left {
            self.out.truncated = true;
            let mut end = self.left;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            &text[..end]
        } else {
            text
        };
        self.left -= text.len();
        if text.is_empty() {
            return;
        }
        self.out.sections.push(Section {
            text: text.to_owned(),
            page,
            heading: heading.map(str::to_owned),
        });
    }

    fn done(self) -> Extracted {
        self.out
    }
}

/// Markdown: one section per heading (ATX `#` headings and setext
/// underlines), the markup left in the text (it tokenizes away).
fn markdown(text: &str, out: &mut Sink) {
    let mut heading: Option<String> = None;
    let mut body = String::new();
    let mut lines = text.lines().peekable();
    let mut in_code = false;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_code = !in_code;
            body.push_str(line);
            body.push('\n');
            continue;
        }
        let atx = !in_code && trimmed.starts_with('#') && {
            let hashes = trimmed.chars().take_while(|c| *c == '#').count();
            hashes <= 6 && trimmed[hashes..].starts_with([' ', '\t'])
        };
        let setext = !in_code
            && !trimmed.is_empty()
            && lines.peek().is_some_and(|next| {
                let n = next.trim();
                n.len() >= 2 && (n.chars().all(|c| c == '=') || n.chars().all(|c| c == '-'))
            })
            && body.trim_end().ends_with('\n') | body.trim().is_empty();
        if atx || setext {
            out.push(None, heading.as_deref(), &body);
            body.clear();
            heading = Some(
                trimmed
                    .trim_start_matches('#')
                    .trim()
                    .trim_end_matches('#')
                    .trim()
                    .to_owned(),
            );
            if setext {
                lines.next();
            }
            continue;
        }
        body.push_str(line);
        body.push('\n');
    }
    out.push(None, heading.as_deref(), &body);
}

/// HTML to text: tags dropped, `script`/`style` contents skipped, block
/// tags become line breaks, common entities decoded.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut skip_until: Option<&'static str> = None;
    while let Some(lt) = rest.find('<') {
        if skip_until.is_none() {
            out.push_str(&decode_entities(&rest[..lt]));
        }
        rest = &rest[lt..];
        // Comments end at `-->`.
        if rest.starts_with("<!--") {
            match rest.find("-->") {
                Some(end) => rest = &rest[end + 3..],
                None => rest = "",
            }
            continue;
        }
        let Some(gt) = rest.find('>') else {
            rest = "";
            break;
        };
        let tag = rest[1..gt].trim().to_ascii_lowercase();
        rest = &rest[gt + 1..];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if let Some(until) = skip_until {
            if tag.starts_with('/') && name == until {
                skip_until = None;
            }
            continue;
        }
        match name.as_str() {
            "script" if !tag.starts_with('/') && !tag.ends_with('/') => skip_until = Some("script"),
            "style" if !tag.starts_with('/') && !tag.ends_with('/') => skip_until = Some("style"),
            "p" | "br" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6"
            | "title" | "section" | "article" | "td" | "th" => out.push('\n'),
            _ => out.push(' '),
        }
    }
    if skip_until.is_none() {
        out.push_str(&decode_entities(rest));
    }
    out
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// PDF: one section per page.
fn pdf(bytes: &[u8], out: &mut Sink) -> Result<(), ExtractError> {
    let pages = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes))
        .map_err(|_| ExtractError::Panicked)?
        .map_err(|e| ExtractError::Malformed("PDF", e.to_string()))?;
    for (i, page) in pages.iter().enumerate() {
        out.push(Some(i as u32 + 1), None, page);
        if out.full() {
            break;
        }
    }
    Ok(())
}

/// Office Open XML packages are zip files: at most this many bytes are
/// inflated from one part (a zip bomb stops here).
const MAX_PART: u64 = 64 * 1024 * 1024;

fn open_zip<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<zip::ZipArchive<Cursor<&'a [u8]>>, ExtractError> {
    zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| ExtractError::Malformed(what, e.to_string()))
}

fn read_part(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    what: &'static str,
) -> Result<Option<String>, ExtractError> {
    let part = match zip.by_name(name) {
        Ok(p) => p,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(ExtractError::Malformed(what, e.to_string())),
    };
    let mut s = String::new();
    part.take(MAX_PART)
        .read_to_string(&mut s)
        .map_err(|e| ExtractError::Malformed(what, e.to_string()))?;
    Ok(Some(s))
}

fn local(name: &[u8]) -> &[u8] {
    match name.iter().position(|b| *b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

fn xml_err(what: &'static str) -> impl Fn(quick_xml::Error) -> ExtractError {
    move |e| ExtractError::Malformed(what, e.to_string())
}

/// docx: paragraphs of `word/document.xml`; a paragraph styled `Heading…`
/// or `Title` starts a section.
fn docx(bytes: &[u8], out: &mut Sink) -> Result<(), ExtractError> {
    const WHAT: &str = "docx";
    let mut zip = open_zip(bytes, WHAT)?;
    let xml = read_part(&mut zip, "word/document.xml", WHAT)?
        .ok_or_else(|| ExtractError::Malformed(WHAT, "no word/document.xml".into()))?;
    let mut reader = Reader::from_str(&xml);
    let mut heading: Option<String> = None;
    let mut body = String::new();
    let mut para = String::new();
    let mut para_is_heading = false;
    let mut in_text = false;
    loop {
        match reader.read_event().map_err(xml_err(WHAT))? {
            Event::Start(e) if local(e.name().as_ref()) == b"t" => in_text = true,
            Event::End(e) if local(e.name().as_ref()) == b"t" => in_text = false,
            Event::Start(e) | Event::Empty(e) if local(e.name().as_ref()) == b"pStyle" => {
                for a in e.attributes().flatten() {
                    if local(a.key.as_ref()) == b"val" {
                        let v = String::from_utf8_lossy(&a.value).to_ascii_lowercase();
                        para_is_heading = v.starts_with("heading") || v == "title";
                    }
                }
            }
            Event::Empty(e) if matches!(local(e.name().as_ref()), b"tab" | b"br") => para.push(' '),
            Event::Text(t) if in_text => {
                let raw = t
                    .decode()
                    .map_err(|e| ExtractError::Malformed(WHAT, e.to_string()))?;
                para.push_str(&raw);
            }
            Event::GeneralRef(r) if in_text => {
                let name = String::from_utf8_lossy(&r);
                para.push_str(&decode_entities(&format!("&{name};")));
            }
            Event::End(e) if local(e.name().as_ref()) == b"p" => {
                if para_is_heading && !para.trim().is_empty() {
                    out.push(None, heading.as_deref(), &body);
                    body.clear();
                    heading = Some(para.trim().to_owned());
                } else {
                    body.push_str(&para);
                    body.push('\n');
                }
                para.clear();
                para_is_heading = false;
                if out.full() {
                    return Ok(());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out.push(None, heading.as_deref(), &body);
    Ok(())
}

/// Text of every `<…:t>` element in a part (pptx `a:t`, xlsx `t`), runs
/// separated by spaces and paragraphs by newlines.
fn text_runs(xml: &str, what: &'static str) -> Result<String, ExtractError> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::new();
    let mut in_text = false;
    loop {
        match reader.read_event().map_err(xml_err(what))? {
            Event::Start(e) if matches!(local(e.name().as_ref()), b"t" | b"v") => in_text = true,
            Event::End(e) if matches!(local(e.name().as_ref()), b"t" | b"v") => {
                in_text = false;
                out.push(' ');
            }
            Event::End(e) if matches!(local(e.name().as_ref()), b"p" | b"si" | b"row") => {
                out.push('\n')
            }
            Event::Text(t) if in_text => {
                let raw = t
                    .decode()
                    .map_err(|e| ExtractError::Malformed(what, e.to_string()))?;
                out.push_str(&raw);
            }
            Event::GeneralRef(r) if in_text => {
                let name = String::from_utf8_lossy(&r);
                out.push_str(&decode_entities(&format!("&{name};")));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// Part names matching `prefix<N>.xml`, in numeric order.
fn numbered_parts(zip: &zip::ZipArchive<Cursor<&[u8]>>, prefix: &str) -> Vec<(u32, String)> {
    let mut parts: Vec<(u32, String)> = zip
        .file_names()
        .filter_map(|n| {
            let num = n.strip_prefix(prefix)?.strip_suffix(".xml")?.parse().ok()?;
            Some((num, n.to_owned()))
        })
        .collect();
    parts.sort();
    parts
}

/// xlsx: the shared strings (where cell text lives), then inline strings
/// and values sheet by sheet.
fn xlsx(bytes: &[u8], out: &mut Sink) -> Result<(), ExtractError> {
    const WHAT: &str = "xlsx";
    let mut zip = open_zip(bytes, WHAT)?;
    if zip.by_name("xl/workbook.xml").is_err() {
        return Err(ExtractError::Malformed(WHAT, "no xl/workbook.xml".into()));
    }
    if let Some(xml) = read_part(&mut zip, "xl/sharedStrings.xml", WHAT)? {
        out.push(None, None, &text_runs(&xml, WHAT)?);
    }
    for (_, name) in numbered_parts(&zip, "xl/worksheets/sheet") {
        if out.full() {
            break;
        }
        if let Some(xml) = read_part(&mut zip, &name, WHAT)? {
            // Cell values of shared-string cells are indexes: keep only
            // inline strings and numbers that are not such indexes.
            out.push(None, None, &sheet_text(&xml)?);
        }
    }
    Ok(())
}

/// A worksheet's inline strings and literal values (shared-string indexes
/// skipped: their text came from the shared strings).
fn sheet_text(xml: &str) -> Result<String, ExtractError> {
    const WHAT: &str = "xlsx";
    let mut reader = Reader::from_str(xml);
    let mut out = String::new();
    let mut shared_cell = false;
    let mut in_text = false;
    loop {
        match reader.read_event().map_err(xml_err(WHAT))? {
            Event::Start(e) if local(e.name().as_ref()) == b"c" => {
                shared_cell = e
                    .attributes()
                    .flatten()
                    .any(|a| a.key.as_ref() == b"t" && a.value.as_ref() == b"s");
            }
            Event::Start(e) if matches!(local(e.name().as_ref()), b"t" | b"v") => {
                in_text = !(shared_cell && local(e.name().as_ref()) == b"v");
            }
            Event::End(e) if matches!(local(e.name().as_ref()), b"t" | b"v") => {
                in_text = false;
                out.push(' ');
            }
            Event::End(e) if local(e.name().as_ref()) == b"row" => out.push('\n'),
            Event::Text(t) if in_text => {
                let raw = t
                    .decode()
                    .map_err(|e| ExtractError::Malformed(WHAT, e.to_string()))?;
                out.push_str(&raw);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// pptx: one section per slide (the slide number is its page).
fn pptx(bytes: &[u8], out: &mut Sink) -> Result<(), ExtractError> {
    const WHAT: &str = "pptx";
    let mut zip = open_zip(bytes, WHAT)?;
    let slides = numbered_parts(&zip, "ppt/slides/slide");
    if slides.is_empty() && zip.by_name("ppt/presentation.xml").is_err() {
        return Err(ExtractError::Malformed(
            WHAT,
            "no ppt/presentation.xml".into(),
        ));
    }
    for (n, name) in slides {
        if out.full() {
            break;
        }
        if let Some(xml) = read_part(&mut zip, &name, WHAT)? {
            out.push(Some(n), None, &text_runs(&xml, WHAT)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            for (name, body) in parts {
                w.start_file(*name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                w.write_all(body.as_bytes()).unwrap();
            }
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn detects_kinds_by_mime_then_extension() {
        assert_eq!(Kind::detect("application/pdf", "x"), Some(Kind::Pdf));
        assert_eq!(Kind::detect("text/plain", "notes.md"), Some(Kind::Markdown));
        assert_eq!(
            Kind::detect("application/octet-stream", "a.docx"),
            Some(Kind::Docx)
        );
        assert_eq!(Kind::detect("image/png", "a.png"), None);
    }

    #[test]
    fn markdown_sections_carry_their_heading() {
        let e = extract(
            Kind::Markdown,
            b"intro words\n# First\nalpha beta\n## Second\ngamma\n",
            1000,
        )
        .unwrap();
        assert_eq!(e.sections.len(), 3);
        assert_eq!(e.sections[0].heading, None);
        assert_eq!(e.sections[1].heading.as_deref(), Some("First"));
        assert_eq!(e.sections[1].text, "alpha beta");
        assert_eq!(e.sections[2].heading.as_deref(), Some("Second"));
    }

    #[test]
    fn html_drops_tags_scripts_and_decodes_entities() {
        let t = html_text("<html><head><style>p{}</style><script>var x=1;</script></head><body><p>Fish &amp; chips&#33;</p></body></html>");
        assert!(t.contains("Fish & chips!"), "{t}");
        assert!(!t.contains("var x"));
        assert!(!t.contains("p{}"));
    }

    #[test]
    fn the_cap_cuts_on_a_char_boundary() {
        let e = extract(Kind::Plain, "ééééé".as_bytes(), 5).unwrap();
        assert!(e.truncated);
        assert_eq!(e.sections[0].text, "éé");
    }

    #[test]
    fn docx_paragraphs_and_headings() {
        let doc = r#"<?xml version="1.0"?><w:document xmlns:w="x"><w:body>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Budget</w:t></w:r></w:p>
            <w:p><w:r><w:t>Quarterly</w:t></w:r><w:r><w:t xml:space="preserve"> numbers &amp; more</w:t></w:r></w:p>
            </w:body></w:document>"#;
        let bytes = zip_of(&[("word/document.xml", doc)]);
        let e = extract(Kind::Docx, &bytes, 10_000).unwrap();
        let s = e.sections.last().unwrap();
        assert_eq!(s.heading.as_deref(), Some("Budget"));
        assert!(s.text.contains("Quarterly numbers & more"), "{:?}", s.text);
    }

    #[test]
    fn xlsx_and_pptx_text() {
        let bytes = zip_of(&[
            ("xl/workbook.xml", "<workbook/>"),
            (
                "xl/sharedStrings.xml",
                "<sst><si><t>Revenue</t></si><si><t>Costs</t></si></sst>",
            ),
            (
                "xl/worksheets/sheet1.xml",
                r#"<worksheet><sheetData><row><c t="s"><v>0</v></c><c><v>42</v></c><c t="inlineStr"><is><t>inline</t></is></c></row></sheetData></worksheet>"#,
            ),
        ]);
        let t = extract(Kind::Xlsx, &bytes, 10_000).unwrap().text();
        assert!(
            t.contains("Revenue") && t.contains("42") && t.contains("inline"),
            "{t}"
        );
        let bytes = zip_of(&[
            ("ppt/presentation.xml", "<p/>"),
            (
                "ppt/slides/slide2.xml",
                "<p:sld><a:p><a:r><a:t>second</a:t></a:r></a:p></p:sld>",
            ),
            (
                "ppt/slides/slide1.xml",
                "<p:sld><a:p><a:r><a:t>first</a:t></a:r></a:p></p:sld>",
            ),
        ]);
        let e = extract(Kind::Pptx, &bytes, 10_000).unwrap();
        assert_eq!(e.sections[0].page, Some(1));
        assert_eq!(e.sections[0].text, "first");
        assert_eq!(e.sections[1].page, Some(2));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(extract(Kind::Pdf, b"not a pdf", 100).is_err());
        assert!(extract(Kind::Docx, b"not a zip", 100).is_err());
    }
}
