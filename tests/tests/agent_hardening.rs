//! The node agent's own hardening and its image baseline, end to end with real eBPF and Docker:
//! it narrows its capabilities at start (bounding by default, effective too in `strict`) and
//! still reports execs; a brainbox started from an image outside the known-good baseline is
//! reported as an `image_unapproved` event, one from an approved image is not.

use brainbox_hardening::procstatus::Confinement;
use brainbox_lab::{
    agent::Agent,
    docker::docker,
    pod::{Pod, PodSpec},
    require, unique,
};
use std::time::Duration;

/// Capability numbers of the agent's default keep list (safety::privileges::DEFAULT_KEEP).
const KEEP_BITS: &[u32] = &[
    39, // CAP_BPF
    38, // CAP_PERFMON
    21, // CAP_SYS_ADMIN
    12, // CAP_NET_ADMIN
    19, // CAP_SYS_PTRACE
    2,  // CAP_DAC_READ_SEARCH
    5,  // CAP_KILL
    24, // CAP_SYS_RESOURCE
    9,  // CAP_LINUX_IMMUTABLE
];

fn keep_mask() -> u64 {
    // What this host can grant at all (its own bounding set may lack some).
    let mine = Confinement::of(std::process::id()).unwrap();
    KEEP_BITS.iter().fold(0u64, |m, b| m | (1 << b)) & mine.cap_bnd
}

#[test]
fn agent_drops_its_bounding_set_by_default_and_everything_else_in_strict_mode() {
    require::lab();
    let agent = Agent::start(&[]).unwrap();
    let st = Confinement::of(agent.pid()).unwrap();
    assert_eq!(st.cap_bnd, keep_mask(), "bounding: {st:?}");
    assert_eq!(st.cap_amb, 0);
    assert_eq!(st.cap_inh, 0);
    assert_eq!(st.no_new_privs, 1);
    drop(agent);

    let mut agent = Agent::start(&[("BRAINBOX_PRIVILEGES__MODE", "strict")]).unwrap();
    let st = Confinement::of(agent.pid()).unwrap();
    assert_eq!(st.cap_bnd, keep_mask(), "strict: {st:?}");
    assert_eq!(st.cap_eff, keep_mask(), "strict: {st:?}");
    assert_eq!(st.cap_prm, keep_mask(), "strict: {st:?}");
    // And it still does its job with only those.
    let name = unique("hard-strict");
    let pod = Pod::start(&PodSpec::new(&name)).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();
    let marker = unique("/tmp/strict-marker");
    let _ = pod.agent.exec(&["cat", &marker]).unwrap();
    agent
        .wait_event(
            |e| e["type"] == "exec" && e["process"]["argv"][1] == marker.as_str(),
            Duration::from_secs(20),
        )
        .unwrap();
}

#[test]
fn brainbox_from_an_unapproved_image_is_reported() {
    require::lab();
    // The pod runs before the agent starts: the agent checks the containers it finds at start.
    // Approve only the image the pod's sidecar actually runs (read from the container, since
    // parallel tests may rebuild and retag the lab image): the BusyBox agent container is then
    // unapproved.
    let name = unique("hard-baseline");
    let pod = Pod::start(&PodSpec::new(&name)).unwrap();
    let approved = docker(&["inspect", "--format", "{{.Image}}", &pod.sidecar.id]).unwrap();
    let allowed = format!("[\"{approved}\"]");
    let mut agent = Agent::start(&[("BRAINBOX_IMAGES__ALLOWED", allowed.as_str())]).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();
    let ev = agent
        .wait_event(
            |e| e["type"] == "image_unapproved" && e["container"]["id"] == pod.agent.id.as_str(),
            Duration::from_secs(20),
        )
        .unwrap();
    let busybox_id = docker(&["inspect", "--format", "{{.Image}}", &pod.agent.id]).unwrap();
    assert_eq!(ev["container"]["image_id"], busybox_id.as_str(), "{ev}");
    assert_eq!(ev["container"]["role"], "agent", "{ev}");
    assert_eq!(ev["baseline_size"], 1, "{ev}");
    // The sidecar started first, from the approved image: nothing was reported for it.
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| e["type"] == "image_unapproved"
                && e["container"]["id"] == pod.sidecar.id.as_str()),
        "approved sidecar image reported"
    );
}
