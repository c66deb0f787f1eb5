//! Property tests: planted secrets never survive, clean lines pass byte for byte, JSON stays
//! JSON, fingerprints are a function of (key, secret).

use brainbox_redact::{
    corpus::{self, expand, Rng},
    rules::BUILTIN,
    Engine, FingerprintKey,
};
use proptest::prelude::*;
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        Engine::builder()
            .key(FingerprintKey::derive(b"props"))
            .build()
            .unwrap()
    })
}

fn planted(rule: usize, seed: u64) -> (String, Vec<String>) {
    let spec = &BUILTIN[rule % BUILTIN.len()];
    if spec.sample.starts_with('@') {
        // Personal data comes from the corpus generator (checksums must be right).
        let l = corpus::secret_lines(seed, 1)
            .into_iter()
            .find(|l| l.rule == spec.id)
            .unwrap();
        return (l.line, l.secrets);
    }
    expand(spec.sample, &mut Rng::new(seed))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn planted_secrets_never_survive(
        rule in 0usize..1000,
        seed in any::<u64>(),
        prefix in "([a-z]{1,8} ){0,4}",
        suffix in "( [a-z]{1,8}){0,4}",
    ) {
        let (frag, secrets) = planted(rule, seed);
        let line = format!("{prefix}{frag}{suffix}");
        let out = engine().redact_line(line.as_bytes());
        for s in &secrets {
            prop_assert!(!corpus::leaks(&out.text, s), "{} leaked in {:?} -> {:?}", s, line, out.text);
        }
        prop_assert!(!out.class.is_clean());
    }

    #[test]
    fn clean_lines_pass_byte_for_byte(seed in any::<u64>()) {
        for l in corpus::clean_lines(seed, 20) {
            let out = engine().redact_line(l.as_bytes());
            prop_assert_eq!(out.text.as_ref(), l.as_str());
            prop_assert!(out.class.is_clean());
        }
    }

    #[test]
    fn printable_ascii_stays_one_line(line in "[a-zA-Z0-9 .,;:/_()\\[\\]{}<>-]{0,200}") {
        // Without digits runs, '@' or secret keywords this stays; when it does change, the
        // result is still one printable line.
        let out = engine().redact_line(line.as_bytes());
        prop_assert!(!out.text.bytes().any(|b| b < 0x20 && b != b'\t'));
    }

    #[test]
    fn arbitrary_bytes_give_one_printable_utf8_line(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let out = engine().redact_line(&bytes);
        prop_assert!(!out.text.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f));
        let forging = ['\u{2028}', '\u{202e}', '\u{1b}', '\r'];
        let clean = !out.text.contains(forging);
        prop_assert!(clean);
    }

    #[test]
    fn json_stays_json(v in json_value(), rule in 0usize..1000, seed in any::<u64>()) {
        let (frag, secrets) = planted(rule, seed);
        // Plant the secret as a value somewhere.
        let doc = serde_json::json!({"wrapper": v, "note": format!("value {frag} end")});
        let line = serde_json::to_string(&doc).unwrap();
        let out = engine().redact_line(line.as_bytes());
        let parsed: serde_json::Value = serde_json::from_str(&out.text)
            .map_err(|e| TestCaseError::fail(format!("{e}: {line} -> {}", out.text)))?;
        prop_assert!(parsed.get("wrapper").is_some());
        prop_assert!(!corpus::leaks(&out.text, &secrets[0]), "{} -> {}", line, out.text);
    }

    #[test]
    fn fingerprints_depend_on_key_and_secret(
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        k1 in any::<[u8; 32]>(),
        k2 in any::<[u8; 32]>(),
    ) {
        let a = FingerprintKey::from_bytes(k1);
        prop_assert_eq!(a.fingerprint(&secret), FingerprintKey::from_bytes(k1).fingerprint(&secret));
        if k1 != k2 {
            prop_assert_ne!(a.fingerprint(&secret), FingerprintKey::from_bytes(k2).fingerprint(&secret));
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("password".to_string()),
        Just("Authorization".to_string()),
        Just("api_key".to_string()),
        Just("token_count".to_string()),
        Just("user".to_string()),
        Just("nested".to_string()),
        "[a-z_]{1,10}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::json!(f)),
        any::<String>().prop_map(serde_json::Value::String),
        "[ -~]{0,40}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}
