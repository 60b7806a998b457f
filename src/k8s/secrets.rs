//! Where tunnel keys come from: [`SecretStore`], implemented on Kubernetes Secrets by [`KubeSecrets`].
//!
//! [`KubeSecrets`] reads Secrets from a reflector (a watch and an in-memory store) of each namespace it
//! is asked about, started at the first read there and dropped by [`SecretStore::retain_namespaces`]
//! once no tunnel of the node lives there: no request per reconcile, and every change of a Secret is
//! reported by [`SecretStore::changes`], so that the tunnels naming it are reconciled at once. It needs
//! `get`, `list` and `watch` on Secrets in the tunnels' namespaces; `create` and `patch` for generated
//! keys.
//!
//! A missing private key is generated into the named Secret: a new Secret, owned by the tunnel (so that
//! it goes when the tunnel goes) and labelled [`MANAGED_BY_LABEL`]=[`MANAGED_BY`]; or an existing Secret
//! that carries that label. Any other Secret is left alone ([`SecretProblem::NotManaged`]). Values never
//! reach logs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;

/// The data of one Secret: key to raw bytes.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// The label that lets the controller write a generated key into an existing Secret; the Secrets it
/// creates carry it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "wireguard-vpp";

/// How long a read waits for the first list of a namespace's Secrets, unless told otherwise
/// ([`KubeSecrets::with_list_timeout`]).
pub const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// An error reading or writing a Secret.
#[derive(Debug, thiserror::Error)]
#[error("Secret {namespace}/{name}: {problem}")]
pub struct SecretError {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// What went wrong.
    #[source]
    pub problem: SecretProblem,
}

/// What went wrong with a Secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretProblem {
    /// The API refused or failed a request.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// The Secrets of the namespace could not be listed in time.
    #[error("the Secrets of its namespace are not listed after {after:?}: {last_error}")]
    NotListed {
        /// How long the read waited.
        after: Duration,
        /// The watch's last error, or that it did not answer.
        last_error: String,
    },
    /// The Secret exists without the key to generate, and is not ours to write.
    #[error(
        "it exists without key {key} and is not labelled {MANAGED_BY_LABEL}={MANAGED_BY}, so the controller \
         does not write a generated private key into it: add the key yourself, or add the label \
         (kubectl label secret NAME {MANAGED_BY_LABEL}={MANAGED_BY})"
    )]
    NotManaged {
        /// The key that is missing.
        key: String,
    },
    /// The Secret changed while the key was being generated; the next reconcile reads it again.
    #[error("it changed while a key was being generated ({0}); reading it again")]
    Changed(String),
}

impl SecretError {
    fn new(namespace: &str, name: &str, problem: impl Into<SecretProblem>) -> SecretError {
        SecretError {
            namespace: namespace.into(),
            name: name.into(),
            problem: problem.into(),
        }
    }

    /// The reason of the `ConfigValid` condition this error leads to.
    pub fn reason(&self) -> &'static str {
        match self.problem {
            SecretProblem::NotManaged { .. } => "SecretNotManaged",
            _ => "SecretUnavailable",
        }
    }

    /// True when reading again soon settles it (a race with another writer), rather than a person.
    pub fn is_transient(&self) -> bool {
        matches!(self.problem, SecretProblem::Changed(_))
    }
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
    /// `owner`) when it does not exist, or adds the key to an existing one that is labelled
    /// [`MANAGED_BY_LABEL`]=[`MANAGED_BY`] (else [`SecretProblem::NotManaged`]).
    fn store_generated(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &[u8],
        owner: OwnerReference,
    ) -> impl Future<Output = Result<(), SecretError>> + Send;

    /// `(namespace, name)` of every Secret that changed (or appeared, or went) in a namespace read
    /// so far; given to the first caller only. `None`: this store cannot tell, and changes are seen
    /// at the next periodic reconcile.
    fn changes(&self) -> Option<BoxStream<'static, (String, String)>> {
        None
    }

    /// Forgets every namespace but `namespaces` (no tunnel of the node lives there any more).
    fn retain_namespaces(&self, namespaces: &HashSet<String>) {
        let _ = namespaces;
    }
}

/// [`SecretStore`] on the Kubernetes API, reading through a reflector per namespace. Clones share
/// the reflectors.
#[derive(Clone)]
pub struct KubeSecrets {
    client: Client,
    shared: Arc<Shared>,
    list_timeout: Duration,
}

struct Shared {
    namespaces: Mutex<HashMap<String, Reflected>>,
    changed: mpsc::UnboundedSender<(String, String)>,
    changes: Mutex<Option<mpsc::UnboundedReceiver<(String, String)>>>,
}

/// The reflector of one namespace's Secrets; its watch stops when this is dropped.
struct Reflected {
    store: Store<Secret>,
    /// The watch's last error, cleared by its next event.
    last_error: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reflected {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeSecrets {
    /// A store using `client`.
    pub fn new(client: Client) -> KubeSecrets {
        let (changed, changes) = mpsc::unbounded_channel();
        KubeSecrets {
            client,
            shared: Arc::new(Shared {
                namespaces: Mutex::default(),
                changed,
                changes: Mutex::new(Some(changes)),
            }),
            list_timeout: LIST_TIMEOUT,
        }
    }

    /// The same store, waiting `timeout` for the first list of a namespace's Secrets.
    pub fn with_list_timeout(mut self, timeout: Duration) -> KubeSecrets {
        self.list_timeout = timeout;
        self
    }

    fn namespaces(&self) -> std::sync::MutexGuard<'_, HashMap<String, Reflected>> {
        self.shared
            .namespaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The Secret `namespace/name` as the namespace's reflector has it, once the reflector has listed
    /// the namespace (started here at the first read).
    async fn cached(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Secret>>, SecretError> {
        let (store, last_error) = {
            let mut namespaces = self.namespaces();
            let reflected = namespaces
                .entry(namespace.to_string())
                .or_insert_with(|| self.reflect(namespace));
            (reflected.store.clone(), reflected.last_error.clone())
        };
        // Polled rather than awaited: the store's readiness future wakes only its last poller, and
        // every reconcile of the namespace may be waiting here.
        let deadline = Instant::now() + self.list_timeout;
        while !is_ready(&store) {
            if Instant::now() >= deadline {
                let last_error = last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .unwrap_or_else(|| "the API server did not answer".into());
                return Err(SecretError::new(
                    namespace,
                    name,
                    SecretProblem::NotListed {
                        after: self.list_timeout,
                        last_error,
                    },
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(store.get(&ObjectRef::new(name).within(namespace)))
    }

    /// Starts the reflector of `namespace`'s Secrets.
    fn reflect(&self, namespace: &str) -> Reflected {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let (store, writer) = reflector::store();
        let last_error = Arc::new(Mutex::new(None));
        let changed = self.shared.changed.clone();
        let errors = last_error.clone();
        let namespace = namespace.to_string();
        let events = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                let error = match event {
                    Ok(
                        watcher::Event::Apply(secret)
                        | watcher::Event::Delete(secret)
                        | watcher::Event::InitApply(secret),
                    ) => {
                        let _ = changed.send((namespace.clone(), secret.name_any()));
                        None
                    }
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                    Err(error) => Some(format!("listing or watching its Secrets: {error}")),
                };
                *errors.lock().unwrap_or_else(|p| p.into_inner()) = error;
            }
        });
        Reflected {
            store,
            last_error,
            task,
        }
    }
}

fn is_ready(store: &Store<Secret>) -> bool {
    use futures::FutureExt;
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
}

fn is_managed(secret: &Secret) -> bool {
    secret.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

impl SecretStore for KubeSecrets {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, SecretError> {
        let secret = self.cached(namespace, name).await?;
        Ok(secret.map(|secret| {
            let mut data: SecretData = secret
                .data
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(key, ByteString(bytes))| (key, bytes))
                .collect();
            // stringData is write-only in a real API server, but stand-ins may return it.
            for (key, text) in secret.string_data.clone().unwrap_or_default() {
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
        let error = |problem: SecretProblem| SecretError::new(namespace, name, problem);
        let existing = match self.cached(namespace, name).await? {
            Some(existing) => existing,
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        namespace: Some(namespace.into()),
                        owner_references: Some(vec![owner]),
                        labels: Some(
                            [(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())].into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    data: Some([(key.to_string(), ByteString(value.to_vec()))].into()),
                    type_: Some("Opaque".into()),
                    ..Secret::default()
                };
                match api.create(&PostParams::default(), &secret).await {
                    Ok(_) => return Ok(()),
                    // Created meanwhile and not seen by the watch yet: look at it once.
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        Arc::new(api.get(name).await.map_err(|e| error(e.into()))?)
                    }
                    Err(source) => return Err(error(source.into())),
                }
            }
        };
        if existing.data.as_ref().is_some_and(|d| d.contains_key(key)) {
            return Err(error(SecretProblem::Changed(format!(
                "it holds key {key} now"
            ))));
        }
        if !is_managed(&existing) {
            return Err(error(SecretProblem::NotManaged { key: key.into() }));
        }
        // Only into the version looked at: a Secret changed meanwhile is refused (409) and read again.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": existing.resource_version()},
            "data": { key: ByteString(value.to_vec()) },
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(error(
                SecretProblem::Changed("another writer changed it".into()),
            )),
            Err(source) => Err(error(source.into())),
        }
    }

    fn changes(&self) -> Option<BoxStream<'static, (String, String)>> {
        let receiver = self
            .shared
            .changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        Some(tokio_stream_from(receiver))
    }

    fn retain_namespaces(&self, namespaces: &HashSet<String>) {
        self.namespaces()
            .retain(|namespace, _| namespaces.contains(namespace));
    }
}

/// The receiver as a stream.
fn tokio_stream_from<T: Send + 'static>(
    receiver: mpsc::UnboundedReceiver<T>,
) -> BoxStream<'static, T> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        let item = receiver.recv().await?;
        Some((item, receiver))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    //! Against kube's tower-test mock: a 403 (the test API server has no RBAC). `tests/k8s_e2e.rs` runs
    //! the same store against the real API server, which serves Secrets.
    use super::*;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use tower_test::mock::pair;

    #[tokio::test]
    async fn a_namespace_that_cannot_be_listed_names_the_secret_and_why() {
        let (service, mut handle) = pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                assert_eq!(request.uri().path(), "/api/v1/namespaces/dn42/secrets");
                let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "secrets is forbidden: User \"agent\" cannot list resource \"secrets\" in the namespace \"dn42\"",
                    "reason": "Forbidden", "code": 403});
                let response = Response::builder()
                    .status(StatusCode::FORBIDDEN)
                    .body(Body::from(serde_json::to_vec(&body).expect("json")))
                    .expect("response");
                respond.send_response(response);
            }
        });
        let store = KubeSecrets::new(Client::new(service, "default"))
            .with_list_timeout(Duration::from_millis(300));
        let error = store.get("dn42", "home-key").await.expect_err("forbidden");
        let text = error.to_string();
        assert!(text.starts_with("Secret dn42/home-key: "), "{text}");
        assert!(text.contains("cannot list resource"), "{text}");
        assert_eq!(error.reason(), "SecretUnavailable");
        drop(store);
        server.abort();
    }
}
