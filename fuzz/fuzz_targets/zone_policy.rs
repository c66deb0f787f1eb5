//! The zone policy parser and validator never panic on hostile YAML, and what they accept has
//! only valid CIDRs and port ranges (what the compiler relies on).
#![no_main]

use brainbox_profile::zones::{Cidr, ZonePolicy};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = ZonePolicy::from_yaml(text, Path::new("fuzz.yaml")) {
        assert!(p.in_pod.proxy_port != 0);
        for f in &p.flows {
            for c in &f.to_cidrs {
                assert!(c.parse::<Cidr>().is_ok(), "accepted bad cidr {c}");
            }
            for port in &f.ports {
                let (lo, hi) = port.range().expect("accepted bad port");
                assert!(lo >= 1 && lo <= hi);
            }
        }
    }
    for line in text.lines().take(8) {
        let _ = line.parse::<Cidr>();
    }
});
