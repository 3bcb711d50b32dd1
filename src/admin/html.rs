//! The status page as HTML (docs/architecture.md §14): one document, inline CSS and SVG, no script, nothing loaded
//! from elsewhere. Every text that comes from a writer (names, labels) or from the cluster goes through
//! [`escape`].

use std::borrow::Cow;
use std::fmt::Write;

use http::StatusCode;

use super::state::Level;
use super::{SeriesRow, SortKey, StatusPage, View, sparkline};

/// `text` safe inside an element or a double-quoted attribute.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whole seconds as the largest two units: `45s`, `3m 20s`, `5h 2m`, `30d 4h`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

const STYLE: &str = "
:root { color-scheme: light dark; --muted: #6b7280; --line: #d1d5db; --ok: #15803d; --warning: #b45309;
  --error: #b91c1c; --info: #1d4ed8; --group: #f3f4f6; }
@media (prefers-color-scheme: dark) { :root { --line: #374151; --group: #1f2937; --muted: #9ca3af; } }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; }
h1 { font-size: 1.4rem; margin: 0 } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem }
.muted, .version { color: var(--muted) }
table { border-collapse: collapse; width: 100% } th, td { text-align: left; padding: .25rem .5rem;
  border-bottom: 1px solid var(--line); vertical-align: middle }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap }
tr.group th { background: var(--group); font-weight: 600 }
.level { font-weight: 600; text-transform: uppercase; font-size: .75rem }
.level-ok { color: var(--ok) } .level-warning { color: var(--warning) } .level-error { color: var(--error) }
.level-info { color: var(--info) }
.label { display: inline-block; border: 1px solid var(--line); border-radius: 3px; padding: 0 .3rem; margin: 1px;
  font-family: ui-monospace, monospace; font-size: .8rem; word-break: break-all }
.spark { color: var(--info); display: block }
form { display: flex; gap: .75rem; align-items: end; flex-wrap: wrap; margin-bottom: .75rem }
label { display: flex; flex-direction: column; font-size: .8rem; color: var(--muted) }
nav { margin: .75rem 0; display: flex; gap: 1rem }
th a { color: inherit }
";

/// The page of one view.
pub fn page(page: &StatusPage, view: &View) -> String {
    let mut out = String::with_capacity(16 * 1024 + page.series.rows.len() * 600);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\">\
         <title>custom-metrics-apiserver status</title><style>{STYLE}</style></head><body>\
         <header><h1>custom-metrics-apiserver</h1><div class=\"version\">version {} · page made {}</div></header>",
        escape(page.version),
        escape(&page.generated_at)
    );
    state(&mut out, page);
    writes(&mut out, page);
    series(&mut out, page, view);
    out.push_str("</body></html>\n");
    out
}

fn level(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok",
        Level::Warning => "warning",
        Level::Error => "error",
        Level::Info => "info",
    }
}

fn state(out: &mut String, page: &StatusPage) {
    out.push_str(
        "<section id=\"state\"><h2>State</h2><table><thead><tr><th>Item</th><th></th><th>Detail</th></tr></thead>",
    );
    for section in &page.state {
        let _ = write!(out, "<tbody><tr class=\"group\"><th colspan=\"3\">{}</th></tr>", escape(section.title));
        for entry in &section.entries {
            let l = level(entry.level);
            let _ = write!(
                out,
                "<tr class=\"state-entry\"><td>{}</td><td class=\"level level-{l}\">{l}</td><td>{}</td></tr>",
                escape(&entry.name),
                escape(&entry.detail)
            );
        }
        out.push_str("</tbody>");
    }
    out.push_str("</table></section>");
}

fn writes(out: &mut String, page: &StatusPage) {
    out.push_str(
        "<section id=\"writes\"><h2>Writes</h2><table><thead><tr><th>Interval (UTC)</th><th>Accepted</th>\
         <th>Refused, by reason</th></tr></thead><tbody>",
    );
    for (i, interval) in page.writes.iter().enumerate() {
        let time = |millis: i64| super::rfc3339(millis).get(11..19).unwrap_or("").to_string();
        let what = if i == 0 { " (under way)" } else { "" };
        let refused: Vec<String> =
            interval.refused.iter().map(|r| format!("{} × {} {}", r.count, r.code, escape(r.reason))).collect();
        let _ = write!(
            out,
            "<tr><td>{}–{}{what}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            time(interval.start_millis),
            time(interval.end_millis),
            interval.accepted,
            if refused.is_empty() { "—".to_string() } else { refused.join(", ") }
        );
    }
    out.push_str("</tbody></table></section>");
}

fn series(out: &mut String, page: &StatusPage, view: &View) {
    let series = &page.series;
    let _ = write!(
        out,
        "<section id=\"series\"><h2>Series</h2><form method=\"get\" action=\"/\">\
         <label>Namespace<input name=\"namespace\" id=\"filter-namespace\" value=\"{}\"></label>\
         <label>Metric name contains<input name=\"metric\" id=\"filter-metric\" value=\"{}\"></label>\
         <label>Sort<select name=\"sort\" id=\"sort\">",
        escape(view.namespace.as_deref().unwrap_or("")),
        escape(view.metric.as_deref().unwrap_or(""))
    );
    for (key, name) in SortKey::ALL {
        for descending in [false, true] {
            let value = format!("{}{name}", if descending { "-" } else { "" });
            let selected = if view.sort == key && view.descending == descending { " selected" } else { "" };
            let _ = write!(
                out,
                "<option value=\"{value}\"{selected}>{name}{}</option>",
                if descending { " ↓" } else { "" }
            );
        }
    }
    let _ = write!(
        out,
        "</select></label><label>Rows per page<input name=\"limit\" type=\"number\" min=\"1\" value=\"{}\"></label>\
         <button type=\"submit\" id=\"apply\">Apply</button></form>",
        view.limit
    );
    let _ = write!(
        out,
        "<p id=\"summary\">{} series · page {} of {} · <a id=\"permalink\" href=\"{}\">link to this view</a></p>",
        series.total,
        series.page,
        series.pages,
        escape(&series.links.this)
    );
    let header = |key: SortKey, title: &str| {
        let arrow = match (view.sort == key, view.descending) {
            (true, false) => " ▲",
            (true, true) => " ▼",
            _ => "",
        };
        format!("<a href=\"{}\">{title}{arrow}</a>", escape(&view.sorted_by(key).link()))
    };
    let _ = write!(
        out,
        "<table id=\"series-table\"><thead><tr><th>{}</th><th>Labels</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>Recent</th></tr></thead><tbody>",
        header(SortKey::Name, "Object"),
        header(SortKey::Value, "Value"),
        header(SortKey::Age, "Age"),
        header(SortKey::Expiry, "Expires in"),
    );
    let mut group: Option<(&str, Option<&str>, &str)> = None;
    for row in &series.rows {
        let this = (row.namespace.as_str(), row.resource.as_deref(), row.metric.as_str());
        if group != Some(this) {
            group = Some(this);
            let namespace = if row.namespace.is_empty() { "(cluster)" } else { &row.namespace };
            let _ = write!(
                out,
                "<tr class=\"group\"><th colspan=\"6\">{} / {} / {}</th></tr>",
                escape(namespace),
                escape(row.resource.as_deref().unwrap_or("external")),
                escape(&row.metric)
            );
        }
        series_row(out, row);
    }
    if series.rows.is_empty() {
        out.push_str("<tr><td colspan=\"6\" class=\"muted\" id=\"no-series\">no series</td></tr>");
    }
    out.push_str("</tbody></table><nav>");
    let _ = write!(out, "<a href=\"{}\">first</a>", escape(&series.links.first));
    if let Some(prev) = &series.links.prev {
        let _ = write!(out, "<a id=\"prev\" href=\"{}\">previous</a>", escape(prev));
    }
    if let Some(next) = &series.links.next {
        let _ = write!(out, "<a id=\"next\" href=\"{}\">next</a>", escape(next));
    }
    out.push_str("</nav></section>");
}

fn series_row(out: &mut String, row: &SeriesRow) {
    let labels: String =
        row.labels.iter().map(|(k, v)| format!("<span class=\"label\">{}={}</span>", escape(k), escape(v))).collect();
    #[allow(clippy::cast_possible_truncation)]
    let expires = row.expires_in_seconds.map_or_else(|| "never".to_string(), |s| duration(s.ceil() as i64));
    #[allow(clippy::cast_possible_truncation)]
    let age = duration(row.age_seconds.floor() as i64);
    let _ = write!(
        out,
        "<tr class=\"series\"><td class=\"object\">{}</td><td>{labels}</td><td class=\"num value\" title=\"{}\">{}</td>\
         <td class=\"num\">{age}</td><td class=\"num\">{expires}</td><td>{}</td></tr>",
        escape(row.object.as_deref().unwrap_or("—")),
        escape(&row.timestamp),
        escape(&row.value),
        sparkline::svg(&row.points),
    );
}

/// A page that says what was wrong with the request.
pub fn error_page(code: StatusCode, message: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">\
         <title>{code}</title><style>{STYLE}</style></head><body><h1>{code}</h1><p id=\"error\">{}</p>\
         <p><a href=\"/\">the status page</a></p></body></html>\n",
        escape(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup_from_writers() {
        assert_eq!(escape("plain"), "plain");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn durations_show_their_two_largest_units() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(-5), "0s");
        assert_eq!(duration(200), "3m 20s");
        assert_eq!(duration(5 * 3600 + 125), "5h 2m");
        assert_eq!(duration(30 * 86_400 + 4 * 3600 + 9), "30d 4h");
    }
}
