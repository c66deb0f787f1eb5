//! `brainboxctl events`: the node agent's JSON event lines, readable by a person.

use serde_json::Value;
use std::io::{BufRead, Write};

/// Renders one event as a single human-readable line; `None` for lines that are not events.
/// Whatever the record holds, the line has no control character (a forged newline, an ANSI
/// escape in a time, a name or a command line).
pub fn render(line: &str) -> Option<String> {
    render_fields(line).map(|l| sanitize(&l))
}

fn render_fields(line: &str) -> Option<String> {
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
            v["output"].as_str().unwrap_or("")
        ));
    }
    match kind {
        "response" => return Some(render_response(clock, &v)),
        "net_deny" => return Some(render_deny(clock, &v)),
        "exec" | "syscall" => {}
        // Other records (`image_unapproved`, ...): the kind and the container, then the JSON.
        _ => {
            let mut rest = v.clone();
            if let Some(o) = rest.as_object_mut() {
                o.remove("type");
                o.remove("time");
            }
            return Some(format!(
                "{clock}  {kind:<6} {}",
                clip(&rest.to_string(), 200)
            ));
        }
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

/// `RESP` line (sanitized by [`render`], like every line): the action, the container, each step with its outcome and time, the evidence.
fn render_response(clock: &str, v: &Value) -> String {
    let short = |k: &str| -> String { v[k].as_str().unwrap_or("").chars().take(12).collect() };
    let steps: Vec<String> = v["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    format!(
                        "{} {} {}ms",
                        s["step"].as_str().unwrap_or("?"),
                        if s["ok"] == true { "ok" } else { "FAILED" },
                        s["ms"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut line = format!(
        "{clock}  RESP   {:<8} {} ({}): {}",
        v["action"].as_str().unwrap_or("?"),
        short("container_id"),
        v["response"].as_str().unwrap_or("?"),
        steps.join(", ")
    );
    if v["evidence_id"].is_string() {
        line.push_str(&format!("  evidence={}", short("evidence_id")));
    }
    if v["new_container_id"].is_string() {
        line.push_str(&format!("  new={}", short("new_container_id")));
    }
    line
}

/// `DENY` line: who tried to reach what, and the rule that said no.
fn render_deny(clock: &str, v: &Value) -> String {
    let d = &v["destination"];
    format!(
        "{clock}  DENY   {} [{}] -> {}:{} {} ({}: {})",
        v["container"]["name"].as_str().unwrap_or("?"),
        v["process"]["comm"].as_str().unwrap_or("?"),
        d["addr"].as_str().unwrap_or("?"),
        d["port"],
        v["proto"].as_str().unwrap_or("?"),
        v["reason"].as_str().unwrap_or("?"),
        v["rule"].as_str().unwrap_or("?"),
    )
}

/// At most `max` characters, `…` when cut.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Control characters (a forged newline, an ANSI escape) become `?`.
pub fn sanitize(s: &str) -> String {
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
    fn renders_responses_denials_and_other_records() {
        let l = r#"{"type":"response","time":"2026-11-26T01:57:46.300000Z","alert_id":"a","response":"critical-recycle","action":"recycle","container_id":"d64fb3cd880141acef","steps":[{"step":"freeze","ok":true,"ms":13,"detail":null,"audit_seq":2},{"step":"capture","ok":false,"ms":128,"detail":"x","audit_seq":3}],"evidence_id":"24f1f2493abe930fd733","new_container_id":"4aca5ae03a93ffff"}"#;
        assert_eq!(
            render(l).unwrap(),
            "01:57:46.300  RESP   recycle  d64fb3cd8801 (critical-recycle): freeze ok 13ms, capture FAILED 128ms  evidence=24f1f2493abe  new=4aca5ae03a93"
        );
        let l = r#"{"type":"net_deny","time":"2026-11-26T01:57:53.540838285Z","container":{"name":"demo-agent"},"destination":{"addr":"198.18.77.1","port":80},"proto":"tcp","reason":"no-flow","rule":"in-pod: agent may reach only its sidecar's proxy port","process":{"comm":"nc\u001b[2J","pid":5}}"#;
        assert_eq!(
            render(l).unwrap(),
            "01:57:53.540  DENY   demo-agent [nc?[2J] -> 198.18.77.1:80 tcp (no-flow: in-pod: agent may reach only its sidecar's proxy port)"
        );
        let l = r#"{"type":"image_unapproved","time":"2026-11-26T01:00:00.000000Z","node":"n\nFAKE","baseline_size":2}"#;
        let r = render(l).unwrap();
        assert!(r.starts_with("01:00:00.000  image_unapproved {"), "{r}");
        assert!(!r.contains('\n'), "{r}");
    }

    #[test]
    fn non_events_are_skipped() {
        assert!(render("not json").is_none());
        assert!(render("{}").is_none());
    }

    /// Any JSON of any record type, with any values where the renderer looks: one line out,
    /// no control character, no panic.
    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("container".to_string()),
                        Just("process".to_string()),
                        Just("steps".to_string()),
                        Just("destination".to_string()),
                        Just("argv".to_string()),
                        Just("name".to_string()),
                        ".{0,6}".prop_map(String::from),
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn hostile_records_render_as_one_clean_line(
            kind in proptest::prop_oneof![
                proptest::strategy::Just("exec".to_string()),
                proptest::strategy::Just("alert".to_string()),
                proptest::strategy::Just("response".to_string()),
                proptest::strategy::Just("net_deny".to_string()),
                proptest::strategy::Strategy::prop_map(".{0,8}", String::from),
            ],
            time in ".{0,30}",
            body in any_value(),
        ) {
            let mut v = match body {
                Value::Object(m) => Value::Object(m),
                other => serde_json::json!({ "x": other }),
            };
            v["type"] = kind.into();
            v["time"] = time.into();
            if let Some(line) = render(&v.to_string()) {
                proptest::prop_assert!(!line.chars().any(char::is_control), "{line:?}");
            }
        }
    }
}
