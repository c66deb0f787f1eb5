//! `brainbox-lab`: the local Docker lab for people (the demo uses it).
//!
//! brainbox-lab images          build the lab images (skipped when up to date)
//! brainbox-lab up NAME         start a watched pod NAME (sidecar + agent containers)
//! brainbox-lab down            remove every container the lab created

use anyhow::{bail, Result};
use brainbox_lab::{
    docker::{docker, remove_containers},
    images,
    pod::{Pod, PodSpec},
    LAB_LABEL,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["images"] => {
            println!("{}", images::agent_image()?);
            println!("{}", images::sidecar_image()?);
        }
        ["up", name] => {
            let pod = Pod::start(&PodSpec::new(name))?;
            println!("{} {}", pod.sidecar.name, pod.agent.name);
            // The pod outlives this command: `brainbox-lab down` removes it.
            std::mem::forget(pod);
        }
        ["down"] => {
            let ids = docker(&["ps", "-aq", "--filter", &format!("label={LAB_LABEL}")])?;
            let ids: Vec<&str> = ids.lines().collect();
            remove_containers(&ids);
            println!("removed {} lab containers", ids.len());
        }
        _ => bail!("usage: brainbox-lab images | up NAME | down"),
    }
    Ok(())
}
