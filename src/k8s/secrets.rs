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

#[cfg(test)]
mod tests {
    //! Against kube's tower-test mock: the exact requests, and a 403 (the test API server has no RBAC).
    //! `tests/k8s_e2e.rs` runs the same store against the real API server, which serves Secrets.
    use super::*;
    use http::{Method, Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use kube::client::Body;
    use tower_test::mock::{Handle, pair};

    type MockHandle = Handle<Request<Body>, Response<Body>>;

    fn mock_client() -> (Client, MockHandle) {
        let (service, handle) = pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), handle)
    }

    fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
        let bytes = serde_json::to_vec(&body).expect("json");
        Response::builder()
            .status(status)
            .body(Body::from(bytes))
            .expect("response")
    }

    fn status_body(code: u16, reason: &str) -> serde_json::Value {
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": format!("secrets \"home-key\" {reason}"), "reason": reason, "code": code})
    }

    async fn body_json(request: Request<Body>) -> serde_json::Value {
        let bytes = request
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("JSON body")
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "wgvpp.io/v1alpha1".into(),
            kind: "WireGuardVppTunnel".into(),
            name: "home".into(),
            uid: "0000-1111".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }

    #[tokio::test]
    async fn get_reads_data_and_maps_not_found_to_none() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (request, respond) = handle.next_request().await.expect("first request");
            assert_eq!(request.method(), Method::GET);
            assert_eq!(
                request.uri().path(),
                "/api/v1/namespaces/dn42/secrets/home-key"
            );
            respond.send_response(json_response(
                StatusCode::OK,
                serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                                   "metadata": {"name": "home-key", "namespace": "dn42"},
                                   "data": {"privateKey": "a2V5Cg=="}}),
            ));
            let (request, respond) = handle.next_request().await.expect("second request");
            assert_eq!(
                request.uri().path(),
                "/api/v1/namespaces/dn42/secrets/absent"
            );
            respond.send_response(json_response(
                StatusCode::NOT_FOUND,
                status_body(404, "NotFound"),
            ));
        });
        let store = KubeSecrets::new(client);
        let data = store
            .get("dn42", "home-key")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            data.get("privateKey").map(Vec::as_slice),
            Some(&b"key\n"[..])
        );
        assert_eq!(store.get("dn42", "absent").await.expect("get"), None);
        server.await.expect("mock server");
    }

    #[tokio::test]
    async fn generated_key_creates_an_owned_secret() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (request, respond) = handle.next_request().await.expect("request");
            assert_eq!(request.method(), Method::POST);
            assert_eq!(request.uri().path(), "/api/v1/namespaces/dn42/secrets");
            let body = body_json(request).await;
            assert_eq!(body["metadata"]["name"], "home-key");
            assert_eq!(
                body["metadata"]["ownerReferences"][0]["kind"],
                "WireGuardVppTunnel"
            );
            assert_eq!(body["metadata"]["ownerReferences"][0]["controller"], true);
            assert_eq!(body["data"]["privateKey"], "a2V5");
            respond.send_response(json_response(StatusCode::CREATED, body));
        });
        KubeSecrets::new(client)
            .store_generated("dn42", "home-key", "privateKey", b"key", owner())
            .await
            .expect("stored");
        server.await.expect("mock server");
    }

    #[tokio::test]
    async fn generated_key_is_added_to_an_existing_secret() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (request, respond) = handle.next_request().await.expect("create");
            assert_eq!(request.method(), Method::POST);
            respond.send_response(json_response(
                StatusCode::CONFLICT,
                status_body(409, "AlreadyExists"),
            ));
            let (request, respond) = handle.next_request().await.expect("patch");
            assert_eq!(request.method(), Method::PATCH);
            assert_eq!(
                request.uri().path(),
                "/api/v1/namespaces/dn42/secrets/home-key"
            );
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            assert_eq!(
                content_type.as_deref(),
                Some("application/merge-patch+json")
            );
            let body = body_json(request).await;
            assert_eq!(body, serde_json::json!({"data": {"privateKey": "a2V5"}}));
            respond.send_response(json_response(
                StatusCode::OK,
                serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "home-key"}}),
            ));
        });
        KubeSecrets::new(client)
            .store_generated("dn42", "home-key", "privateKey", b"key", owner())
            .await
            .expect("stored");
        server.await.expect("mock server");
    }

    #[tokio::test]
    async fn api_errors_name_the_secret() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (_, respond) = handle.next_request().await.expect("request");
            respond.send_response(json_response(
                StatusCode::FORBIDDEN,
                status_body(403, "Forbidden"),
            ));
        });
        let error = KubeSecrets::new(client)
            .get("dn42", "home-key")
            .await
            .expect_err("forbidden");
        assert!(
            error.to_string().starts_with("Secret dn42/home-key: "),
            "{error}"
        );
        server.await.expect("mock server");
    }
}
