//! `brainbox-lab`: the local Docker lab for people (the demo uses it).
//!
//! brainbox-lab images          build the lab images (skipped when up to date)
//! brainbox-lab up NAME         start a watched pod NAME (sidecar + agent containers)
//! brainbox-lab down            remove every container the lab created
//! brainbox-lab product-images PROFILE [LOCK]
//!                              build the FROM scratch product images from the musl binaries of
//!                              PROFILE (debug|release), print their sizes, write LOCK (JSON)

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
        ["product-images", profile, rest @ ..] => {
            let built = images::product_images(profile)?;
            println!("{:<12} {:>10}  {:<40} id", "image", "size", "reference");
            for i in &built {
                println!(
                    "{:<12} {:>7.2} MiB  {:<40} {}",
                    i.name,
                    i.size_bytes as f64 / (1024.0 * 1024.0),
                    i.reference,
                    i.id
                );
            }
            if let [lock] = rest {
                let json = serde_json::to_string_pretty(&serde_json::json!({ "images": built }))?;
                std::fs::write(lock, json + "\n")?;
                println!("wrote {lock}");
            }
        }
        _ => bail!(
            "usage: brainbox-lab images | up NAME | down | product-images debug|release [LOCK]"
        ),
    }
    Ok(())
}
