//! Recreating a container from its known-good image through the Docker API: the same name,
//! configuration and host configuration (network mode, mounts, security options, labels), but
//! the image pinned to the digest recorded when the container first started.

use bollard::{
    models::ContainerCreateBody,
    query_parameters::{
        CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    },
    Docker,
};
use futures_util::StreamExt;

/// Errors recreating a container.
#[derive(Debug, thiserror::Error)]
pub enum RecreateError {
    /// A Docker API call failed.
    #[error("Docker API: {0}")]
    Api(#[from] bollard::errors::Error),
    /// The inspected configuration could not be turned into a create request.
    #[error("cannot rebuild the container's configuration: {0}")]
    Config(String),
}

/// Builds the create request for a replacement: the old container's `Config` and `HostConfig`,
/// with `Image` set to `image`. Both Docker structures use the Engine API's field names, so the
/// translation goes through their JSON form.
pub fn replacement_body(
    config: &serde_json::Value,
    host_config: &serde_json::Value,
    image: &str,
) -> Result<ContainerCreateBody, RecreateError> {
    let mut body = config.clone();
    let obj = body
        .as_object_mut()
        .ok_or_else(|| RecreateError::Config("container config is not an object".into()))?;
    obj.insert("Image".into(), serde_json::Value::from(image));
    // A container sharing another's network namespace gets its UTS settings from there; Docker
    // refuses them explicitly set.
    let shares_net = host_config["NetworkMode"]
        .as_str()
        .is_some_and(|m| m.starts_with("container:"));
    if shares_net {
        obj.remove("Hostname");
        obj.remove("Domainname");
    }
    obj.insert("HostConfig".into(), host_config.clone());
    serde_json::from_value(body).map_err(|e| RecreateError::Config(e.to_string()))
}

/// Removes `old_id` (it is already dead) and creates and starts its replacement from `image`.
/// Returns the new container id.
pub async fn recreate(docker: &Docker, old_id: &str, image: &str) -> Result<String, RecreateError> {
    let c = docker.inspect_container(old_id, None).await?;
    let name = c
        .name
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned();
    let config = serde_json::to_value(c.config.unwrap_or_default())
        .map_err(|e| RecreateError::Config(e.to_string()))?;
    let host = serde_json::to_value(c.host_config.unwrap_or_default())
        .map_err(|e| RecreateError::Config(e.to_string()))?;
    let mut body = replacement_body(&config, &host, image)?;
    // Docker's default hostname is the container id: let the new container get its own.
    if body
        .hostname
        .as_deref()
        .is_some_and(|h| old_id.starts_with(h))
    {
        body.hostname = None;
    }
    docker
        .remove_container(
            old_id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await?;
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await?;
    docker.start_container(&created.id, None).await?;
    Ok(created.id)
}

/// The container's last `lines` lines of output (stdout and stderr), bounded to `max_bytes`.
pub async fn recent_logs(docker: &Docker, id: &str, lines: usize, max_bytes: usize) -> Vec<u8> {
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .tail(&lines.to_string())
        .build();
    let mut out = Vec::new();
    let mut stream = docker.logs(id, Some(opts));
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                let bytes = chunk.into_bytes();
                let room = max_bytes.saturating_sub(out.len());
                out.extend_from_slice(&bytes[..bytes.len().min(room)]);
                if room <= bytes.len() {
                    break;
                }
            }
            Err(e) => {
                out.extend_from_slice(format!("\n[log read error: {e}]\n").as_bytes());
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_keeps_config_and_pins_the_image() {
        let config = serde_json::json!({
            "Image": "brainbox-lab/busybox:latest",
            "Hostname": "0123456789ab",
            "Cmd": ["sleep", "86400"],
            "User": "1000:1000",
            "Labels": {"brainbox.io/profile": "default"}
        });
        let host = serde_json::json!({"NetworkMode": "container:abc", "ReadonlyRootfs": true, "CapDrop": ["ALL"]});
        let body = replacement_body(&config, &host, "sha256:1234").unwrap();
        assert_eq!(body.image.as_deref(), Some("sha256:1234"));
        assert_eq!(body.hostname, None);
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("container:abc"));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(body.labels.unwrap()["brainbox.io/profile"], "default");
    }

    #[test]
    fn non_object_config_is_an_error() {
        assert!(replacement_body(&serde_json::json!([]), &serde_json::json!({}), "x").is_err());
    }
}
