//! Where tunnel keys come from: [`SecretStore`], implemented on Kubernetes Secrets by [`KubeSecrets`].
//!
//! The controller reads every referenced Secret at each reconcile (at least every status interval), so a
//! changed key is picked up without watching Secrets cluster-wide. A missing private key is generated into
//! the named Secret, owned by the tunnel so that it goes when the tunnel goes. Values never reach logs.

use std::collections::BTreeMap;
use std::future::Future;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// The data of one Secret: key to raw bytes.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// An error reading or writing a Secret.
#[derive(Debug, thiserror::Error)]
#[error("Secret {namespace}/{name}: {source}")]
pub struct SecretError {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

/// Reads Secrets and stores generated keys.
pub trait SecretStore: Send + Sync + 'static {
    /// The data of Secret `namespace/name`, or `None` when it does not exist.
    fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<SecretData>, SecretError>> + Send;

    /// Stores a generated `value` under `key` of Secret `namespace/name`: creates the Secret (owned by
    /// `owner`) when it does not exist, or adds the key to an existing one.
    fn store_generated(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &[u8],
        owner: OwnerReference,
    ) -> impl Future<Output = Result<(), SecretError>> + Send;
}

/// [`SecretStore`] on the Kubernetes API.
#[derive(Clone)]
pub struct KubeSecrets {
    client: Client,
}

impl KubeSecrets {
    /// A store using `client`.
    pub fn new(client: Client) -> KubeSecrets {
        KubeSecrets { client }
    }
}

impl SecretStore for KubeSecrets {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, SecretError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api.get_opt(name).await.map_err(|source| SecretError {
            namespace: namespace.into(),
            name: name.into(),
            source,
        })?;
        Ok(secret.map(|secret| {
            let mut data: SecretData = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(key, ByteString(bytes))| (key, bytes))
                .collect();
            // stringData is write-only in a real API server, but stand-ins may return it.
            for (key, text) in secret.string_data.unwrap_or_default() {
                data.entry(key).or_insert_with(|| text.into_bytes());
            }
            data
        }))
    }

    async fn store_generated(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &[u8],
        owner: OwnerReference,
    ) -> Result<(), SecretError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let error = |source| SecretError {
            namespace: namespace.into(),
            name: name.into(),
            source,
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                owner_references: Some(vec![owner]),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "wireguard-vpp".to_string(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            data: Some([(key.to_string(), ByteString(value.to_vec()))].into()),
            type_: Some("Opaque".into()),
            ..Secret::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // The Secret exists without this key: add the key, leave everything else alone.
                let patch = serde_json::json!({ "data": { key: ByteString(value.to_vec()) } });
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
                    .map_err(error)
            }
            Err(source) => Err(error(source)),
        }
    }
}
