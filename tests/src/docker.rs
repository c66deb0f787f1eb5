//! A thin, checked wrapper over the docker CLI.

use anyhow::{bail, Context, Result};
use std::process::{Command, Output};

/// Runs `docker <args>` and returns stdout, failing with stderr on a non-zero exit.
pub fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .with_context(|| format!("running docker {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `docker <args>` and returns the raw output whatever the exit status.
pub fn docker_output(args: &[&str]) -> Result<Output> {
    Command::new("docker")
        .args(args)
        .output()
        .with_context(|| format!("running docker {}", args.join(" ")))
}

/// True if an image with this reference exists locally.
pub fn image_exists(reference: &str) -> bool {
    docker_output(&["image", "inspect", "--format", "{{.Id}}", reference])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Removes containers by id or name, ignoring ones already gone.
pub fn remove_containers(ids: &[&str]) {
    if ids.is_empty() {
        return;
    }
    let mut args = vec!["rm", "-f", "-v"];
    args.extend_from_slice(ids);
    let _ = docker_output(&args);
}

/// A container started by the lab; removed on drop.
#[derive(Debug)]
pub struct Container {
    /// Full id.
    pub id: String,
    /// Name.
    pub name: String,
}

impl Container {
    /// Starts `docker run -d <args>` and returns the container.
    pub fn run(name: &str, args: &[&str]) -> Result<Container> {
        let mut full = vec!["run", "-d", "--name", name, "--label", crate::LAB_LABEL];
        full.extend_from_slice(args);
        let id = docker(&full)?;
        Ok(Container {
            id,
            name: name.to_owned(),
        })
    }

    /// `docker exec` in the container, returning the output whatever the exit status.
    pub fn exec(&self, cmd: &[&str]) -> Result<Output> {
        self.exec_with(&[], cmd)
    }

    /// `docker exec <opts> <container> <cmd>` (e.g. `-t`, `-u 0`), output whatever the status.
    pub fn exec_with(&self, opts: &[&str], cmd: &[&str]) -> Result<Output> {
        let mut args = vec!["exec"];
        args.extend_from_slice(opts);
        args.push(self.id.as_str());
        args.extend_from_slice(cmd);
        docker_output(&args)
    }

    /// `docker exec` that must succeed; returns stdout.
    pub fn exec_ok(&self, cmd: &[&str]) -> Result<String> {
        let out = self.exec(cmd)?;
        if !out.status.success() {
            bail!(
                "{:?} in {} failed: {}",
                cmd,
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The main process's pid on the host.
    pub fn pid(&self) -> Result<u32> {
        docker(&["inspect", "--format", "{{.State.Pid}}", &self.id])?
            .parse()
            .context("parsing container pid")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        remove_containers(&[&self.id]);
    }
}
