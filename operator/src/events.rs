//! `brainboxctl events`: the node agent's JSON event lines, readable by a person.

use serde_json::Value;
use std::io::{BufRead, Write};

/// Renders one event as a single human-readable line; `None` for lines that are not events.
pub fn render(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    let kind = v["type"].as_str()?;
    let time = v["time"].as_str().unwrap_or("");
    // HH:MM:SS.mmm out of RFC 3339.
    let clock = time.get(11..23).unwrap_or(time);
    if kind == "alert" {
        let c = &v["container"];
        return Some(format!(
            "{clock}  ALERT  {:<8} {} [{}] {}",
            v["priority"].as_str().unwrap_or("?").to_uppercase(),
            v["rule"].as_str().unwrap_or("?"),
            c["name"].as_str().unwrap_or("host"),
            sanitize(v["output"].as_str().unwrap_or(""))
        ));
    }
    let c = &v["container"];
    let who = if c.is_null() {
        format!("cgroup {}", v["cgroup_id"])
    } else {
        format!(
            "{} [{}{}]",
            c["name"].as_str().unwrap_or("?"),
            c["profile"].as_str().unwrap_or("?"),
            c["role"]
                .as_str()
                .map(|r| format!("/{r}"))
                .unwrap_or_default()
        )
    };
    let p = &v["process"];
    let argv = p["argv"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| shell_quote(s.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    Some(format!(
        "{clock}  {kind:<6} {who:<40} uid={:<5} pid={:<7} {}{}",
        p["uid"],
        p["pid"],
        argv,
        if p["truncated"] == true { " …" } else { "" }
    ))
}

/// Control characters (a forged newline, an ANSI escape) become `?`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    let printable = sanitize(s);
    if safe {
        printable
    } else {
        format!("'{}'", printable.replace('\'', "'\\''"))
    }
}

/// Copies events from `input` to `out`, rendered (or as JSON when `json`), following the file
/// as it grows when `follow`.
pub fn run(
    mut input: Box<dyn BufRead>,
    out: &mut dyn Write,
    json: bool,
    follow: bool,
) -> std::io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = input.read_line(&mut line)?;
        if n == 0 {
            if !follow {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        if json {
            out.write_all(line.as_bytes())?;
        } else if let Some(r) = render(line.trim_end()) {
            writeln!(out, "{r}")?;
        }
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_exec() {
        let l = r#"{"type":"exec","time":"2026-11-25T16:24:03.861094696Z","container":{"name":"p-agent","profile":"default","role":"agent"},"process":{"pid":7,"uid":1000,"argv":["sh","-c","echo hi; id"],"truncated":false}}"#;
        let r = render(l).unwrap();
        assert!(r.starts_with("16:24:03.861"), "{r}");
        assert!(r.contains("p-agent [default/agent]"), "{r}");
        assert!(r.contains("sh -c 'echo hi; id'"), "{r}");
    }

    #[test]
    fn control_characters_cannot_forge_lines() {
        let l = r#"{"type":"exec","time":"t","container":null,"cgroup_id":1,"process":{"argv":["a\nFAKE"]}}"#;
        let r = render(l).unwrap();
        assert!(!r.contains('\n'), "{r}");
    }

    #[test]
    fn renders_alerts_without_control_characters() {
        let l = r#"{"type":"alert","time":"2026-11-25T16:24:03.861Z","rule":"Read sensitive file untrusted","priority":"warning","container":{"name":"p-agent"},"output":"file=/etc/shadow\u001b[2J\nforged"}"#;
        let r = render(l).unwrap();
        assert!(
            r.contains("ALERT  WARNING  Read sensitive file untrusted [p-agent]"),
            "{r}"
        );
        assert!(!r.contains('\n') && !r.contains('\u{1b}'), "{r}");
    }

    #[test]
    fn non_events_are_skipped() {
        assert!(render("not json").is_none());
        assert!(render("{}").is_none());
    }
}
