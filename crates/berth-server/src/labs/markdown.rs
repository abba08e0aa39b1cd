//! A step's markdown as HTML a page can insert as it is.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};

/// CommonMark with tables and strikethrough. HTML the author wrote is shown as text, never
/// passed through, and links keep only `http(s)`, `mailto` and relative targets: the page that
/// inserts this runs with the learner's login.
pub fn to_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

/// The URL when its scheme is safe to follow from Berth's pages, `#` otherwise.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lower = url.trim().to_ascii_lowercase();
    let safe = match lower.split_once(':') {
        // A colon after a slash, `?` or `#` is part of a relative URL, not a scheme.
        Some((scheme, _)) if !scheme.contains(['/', '?', '#']) => {
            matches!(scheme, "http" | "https" | "mailto")
        }
        _ => true,
    };
    if safe { url } else { "#".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_html_with_the_authors_html_escaped() {
        let html = to_html("# Build\n\nRun `docker build`.\n\n<script>alert(1)</script>\n");
        assert!(html.contains("<h1>Build</h1>"), "{html}");
        assert!(html.contains("<code>docker build</code>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn links_keep_only_safe_schemes() {
        let html = to_html("[a](javascript:alert(1)) [b](https://docs.docker.com) [c](../x?y=a:b)");
        assert!(!html.contains("javascript"), "{html}");
        assert!(html.contains("https://docs.docker.com"), "{html}");
        assert!(html.contains("../x?y=a:b"), "{html}");
    }
}
