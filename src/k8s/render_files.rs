//! `wireguard-vpp render`: reads `WireGuardVppTunnel` documents (and the Secrets they refer to) from a
//! YAML file and writes each tunnel in the original's layout, so the mapping of [`super::render`] can be
//! read and tested offline. The only file I/O of rendering is here.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::crd::{SecretKeyRef, WireGuardVppTunnel};
use super::gateway::Gateway;
use super::render::{RenderError, RenderedTunnel, SecretValues, render};
use crate::config::Env;
use crate::wg::Key;

/// The arguments of `wireguard-vpp render`.
#[derive(Debug, Clone)]
pub struct RenderArgs {
    /// A YAML file with one or more `WireGuardVppTunnel` documents and, optionally, the `v1` Secrets
    /// they refer to (`data` or `stringData`).
    pub file: PathBuf,
    /// The directory of gateway files (`<bridgeID>.json`); with it the tunnel is also validated as the
    /// CLI would validate the files, and `gw/<id>.json` is written.
    pub gateway_dir: Option<PathBuf>,
    /// Where to write `if/<name>.json`, `gw/<id>.json` and `<name>.conf`.
    pub out: PathBuf,
}

/// `wireguard-vpp render`: writes each tunnel of `args.file` in the original's layout under `args.out`,
/// and returns the paths written. Files holding keys or the memif secret are written owner-only.
/// Nothing is written unless every tunnel renders.
pub fn run(args: &RenderArgs) -> Result<Vec<PathBuf>, RenderError> {
    let input_error = |reason: String| RenderError::Input {
        path: args.file.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&args.file).map_err(|err| input_error(err.to_string()))?;
    let mut tunnels = Vec::new();
    let mut secrets = BTreeMap::<String, SecretValues>::new();
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).map_err(|err| input_error(err.to_string()))?;
    for (index, value) in documents.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        match kind {
            "WireGuardVppTunnel" => {
                let tunnel: WireGuardVppTunnel = serde_json::from_value(value)
                    .map_err(|err| input_error(format!("document {}: {err}", index + 1)))?;
                tunnels.push(tunnel);
            }
            "Secret" => {
                let secret = secret_document(&value).map_err(|reason| {
                    input_error(format!("document {} (Secret): {reason}", index + 1))
                })?;
                let values = secrets.entry(secret.namespace).or_default();
                for (key, bytes) in secret.data {
                    values.insert(
                        SecretKeyRef {
                            name: secret.name.clone(),
                            key,
                        },
                        bytes,
                    );
                }
            }
            other => {
                return Err(input_error(format!(
                    "document {}: unexpected kind {other:?}",
                    index + 1
                )));
            }
        }
    }
    if tunnels.is_empty() {
        return Err(input_error("no WireGuardVppTunnel document".into()));
    }
    let mut rendered = Vec::with_capacity(tunnels.len());
    for tunnel in &tunnels {
        let namespace = tunnel.metadata.namespace.as_deref().unwrap_or("default");
        let values = secrets.get(namespace).cloned().unwrap_or_default();
        let uid = tunnel
            .spec
            .uid
            .or_else(|| tunnel.status.as_ref().and_then(|s| s.uid))
            .ok_or(RenderError::NoUid)?;
        let gateway = match &args.gateway_dir {
            Some(dir) => Some(Gateway::load(dir, tunnel.spec.bridge_id)?),
            None => None,
        };
        let tunnel = render(tunnel, uid, &values, gateway.as_ref())?;
        if tunnel.gateway.is_some() {
            // The same checks as the CLI runs on files; offline a missing private key is fine.
            let mut with_key = tunnel.clone();
            with_key
                .wireguard
                .private_key
                .get_or_insert_with(Key::generate_private);
            with_key.to_spec(&Env::default())?;
        }
        rendered.push(tunnel);
    }
    let mut written = Vec::new();
    for tunnel in &rendered {
        written.extend(write_files(tunnel, &args.out)?);
    }
    Ok(written)
}

/// A `v1` Secret document of the `render` input.
struct SecretDocument {
    namespace: String,
    name: String,
    /// Key and decoded value.
    data: Vec<(String, Vec<u8>)>,
}

/// Reads a `v1` Secret document (`data` in base64, `stringData` as text) with k8s-openapi's own types.
fn secret_document(value: &serde_json::Value) -> Result<SecretDocument, String> {
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let name = secret.metadata.name.ok_or("no metadata.name")?;
    let namespace = secret
        .metadata
        .namespace
        .unwrap_or_else(|| "default".to_owned());
    let mut data: Vec<(String, Vec<u8>)> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, bytes)| (key, bytes.0))
        .collect();
    data.extend(
        secret
            .string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, text)| (key, text.into_bytes())),
    );
    Ok(SecretDocument {
        namespace: namespace.to_string(),
        name: name.to_string(),
        data,
    })
}

/// Writes `if/<name>.json`, `gw/<id>.json` (when the gateway is known) and `<name>.conf` under `out`.
pub fn write_files(rendered: &RenderedTunnel, out: &Path) -> Result<Vec<PathBuf>, RenderError> {
    let mut written = Vec::new();
    let if_path = out.join("if").join(format!("{}.json", rendered.name));
    write_file(&if_path, &rendered.interface.to_json(), 0o600)?;
    written.push(if_path);
    if let Some(gateway) = &rendered.gateway {
        let gw_path = out
            .join("gw")
            .join(format!("{}.json", rendered.interface.vpp_bridge_id));
        write_file(&gw_path, &gateway.file.to_json(), 0o644)?;
        written.push(gw_path);
    }
    let conf_path = out.join(format!("{}.conf", rendered.name));
    write_file(&conf_path, &rendered.wireguard.to_wg_conf(), 0o600)?;
    written.push(conf_path);
    Ok(written)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), RenderError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let write_error = |source| RenderError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    // An existing file keeps its old mode on open; set it explicitly.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(write_error)?;
    file.write_all(contents.as_bytes()).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/k8s/tunnel.yaml");
    const GATEWAYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/k8s/gateways");

    #[test]
    fn run_writes_the_original_layout_with_tight_modes() {
        use std::os::unix::fs::PermissionsExt;
        let out = tempfile::tempdir().expect("tempdir");
        let args = RenderArgs {
            file: EXAMPLE.into(),
            gateway_dir: Some(GATEWAYS.into()),
            out: out.path().into(),
        };
        let written = run(&args).expect("render runs");
        let names: Vec<_> = written
            .iter()
            .map(|p| p.strip_prefix(out.path()).expect("under out"))
            .collect();
        assert_eq!(
            names,
            [
                Path::new("if/home.json"),
                Path::new("gw/4242.json"),
                Path::new("home.conf")
            ]
        );
        let mode = |p: &str| {
            std::fs::metadata(out.path().join(p))
                .expect("written")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(
            (
                mode("if/home.json"),
                mode("home.conf"),
                mode("gw/4242.json")
            ),
            (0o600, 0o600, 0o644)
        );
        let gw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("gw/4242.json")).expect("gw"))
                .expect("json");
        assert_eq!(gw["VppBridgeLoop_SwIfName"], "loop42");
        let conf = std::fs::read_to_string(out.path().join("home.conf")).expect("conf");
        assert!(conf.contains("PresharedKey = FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="));
    }

    #[test]
    fn run_refuses_bad_input_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("t.yaml");
        std::fs::write(&input, "kind: ConfigMap\n").expect("write");
        let out = dir.path().join("out");
        let args = RenderArgs {
            file: input.clone(),
            gateway_dir: None,
            out: out.clone(),
        };
        let error = run(&args).expect_err("wrong kind");
        assert!(
            error.to_string().contains("t.yaml") && error.to_string().contains("ConfigMap"),
            "{error}"
        );
        assert!(!out.exists());
    }

    proptest::proptest! {
        #[test]
        fn run_never_panics_on_hostile_yaml(text in "\\PC{0,300}") {
            let dir = tempfile::tempdir().expect("tempdir");
            let input = dir.path().join("t.yaml");
            std::fs::write(&input, &text).expect("write");
            let args = RenderArgs { file: input, gateway_dir: None, out: dir.path().join("out") };
            let _ = run(&args);
        }
    }
}
