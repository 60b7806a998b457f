//! The UAPI socket `<dir>/<name>.sock` (`/var/run/wireguard` by default, where `wg` looks).
//!
//! As wireguard-go: the directory is created with mode 0755, the socket is owner-only (0700), a
//! stale socket (nobody answers) is replaced and a live one refused. The socket appears already
//! owner-only: it is bound in a private 0700 directory and renamed into place, so there is no moment
//! where others could connect. Deleting the socket file ends [`UapiListener::serve`] (the tunnel
//! then stops, as the original did); dropping the listener removes the file if it is still ours.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::wg::device::WgDevice;
use crate::wg::ip_side::{IpRecv, IpSend};
use crate::wg::uapi::connection::serve_connection;

/// Where `wg` looks for UAPI sockets.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/wireguard";

/// Longest interface name (IFNAMSIZ - 1), which `wg` also enforces.
pub const MAX_NAME_LEN: usize = 15;

/// How often the socket file is checked for deletion: a `stat` per tunnel, so not more often than a
/// person removing the socket needs (every second, one wake-up for all tunnels of the process).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Most connections served at once; one more is closed at once. The socket is its owner's only, so this
/// bounds a runaway client of the owner (each connection holds a task and its buffers).
pub const MAX_CONNECTIONS: usize = 64;

/// Why the UAPI socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The interface name cannot name a socket.
    #[error("interface name {name:?} is not usable for the UAPI socket: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// The socket directory could not be created.
    #[error("cannot create the UAPI socket directory {dir}: {source}")]
    CreateDir { dir: PathBuf, source: io::Error },
    /// Another process serves this interface.
    #[error(
        "UAPI socket {path} is in use by a running process; stop it first or choose another interface name"
    )]
    InUse { path: PathBuf },
    /// Something that is not a socket is in the way.
    #[error("{path} exists and is not a socket; remove it or choose another interface name")]
    NotASocket { path: PathBuf },
    /// Binding or moving the socket into place failed.
    #[error("cannot create the UAPI socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
}

/// Why [`UapiListener::serve`] returned.
#[derive(Debug)]
pub enum ServeEnd {
    /// The socket file was deleted or replaced: the tunnel should stop.
    SocketRemoved,
    /// Accepting connections failed.
    AcceptFailed(io::Error),
}

/// A bound UAPI socket, not yet serving.
#[derive(Debug)]
pub struct UapiListener {
    path: PathBuf,
    listener: Option<std::os::unix::net::UnixListener>,
    // (device, inode) of the socket file we created, to tell it from a replacement.
    identity: (u64, u64),
}

impl UapiListener {
    /// Creates `<dir>/<name>.sock`, replacing a stale socket and refusing a live one.
    pub fn bind(dir: &Path, name: &str) -> Result<UapiListener, ServerError> {
        validate_name(name)?;
        create_socket_dir(dir)?;
        let path = dir.join(format!("{name}.sock"));
        check_existing(&path)?;
        let bind_error = |source| ServerError::Bind {
            path: path.clone(),
            source,
        };

        let private_dir = dir.join(format!(
            ".{name}.sock.{}.{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private_dir)
            .map_err(bind_error)?;
        let staged = private_dir.join("s");
        let bound = std::os::unix::net::UnixListener::bind(&staged)
            .and_then(|listener| {
                std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o700))?;
                std::fs::rename(&staged, &path)?;
                Ok(listener)
            })
            .map_err(bind_error);
        let _ = std::fs::remove_file(&staged);
        let _ = std::fs::remove_dir(&private_dir);
        let listener = bound?;
        let metadata = std::fs::symlink_metadata(&path).map_err(bind_error)?;
        Ok(UapiListener {
            path,
            listener: Some(listener),
            identity: (metadata.dev(), metadata.ino()),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections (each in its own task, several requests each) until the socket file is
    /// deleted or accepting fails. Dropping the future stops every connection.
    pub async fn serve<Tx: IpSend, Rx: IpRecv>(
        mut self,
        device: Arc<WgDevice<Tx, Rx>>,
    ) -> ServeEnd {
        let listener = match self.listener.take().map(|l| {
            l.set_nonblocking(true)
                .and_then(|()| tokio::net::UnixListener::from_std(l))
        }) {
            Some(Ok(listener)) => listener,
            Some(Err(e)) => return ServeEnd::AcceptFailed(e),
            None => {
                return ServeEnd::AcceptFailed(io::Error::other("the listener was already served"));
            }
        };
        let mut connections = JoinSet::new();
        // On the process-wide grid: all tunnels' checks run in one wake-up.
        let mut watch = crate::task::shared_interval(WATCH_INTERVAL);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(_) if connections.len() >= MAX_CONNECTIONS => {
                        tracing::warn!(limit = MAX_CONNECTIONS, "UAPI connection refused: too many open at once");
                    }
                    Ok((stream, _)) => {
                        let device = Arc::clone(&device);
                        connections.spawn(async move { serve_connection(stream, &device).await });
                    }
                    Err(e) if is_transient(&e) => {
                        tracing::warn!(error = %e, "UAPI accept failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return ServeEnd::AcceptFailed(e),
                },
                _ = watch.tick() => {
                    if !self.is_ours() {
                        tracing::info!(path = %self.path.display(), "UAPI socket removed; stopping");
                        return ServeEnd::SocketRemoved;
                    }
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }

    fn is_ours(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity)
    }
}

impl Drop for UapiListener {
    fn drop(&mut self) {
        if self.is_ours() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn validate_name(name: &str) -> Result<(), ServerError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("it is a directory name")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b))
    {
        Some("only letters, digits and _=+.- are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ServerError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn create_socket_dir(dir: &Path) -> Result<(), ServerError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .map_err(|source| ServerError::CreateDir {
            dir: dir.to_owned(),
            source,
        })
}

fn check_existing(path: &Path) -> Result<(), ServerError> {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !metadata.file_type().is_socket() {
        return Err(ServerError::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ServerError::InUse {
            path: path.to_owned(),
        }),
        // Nobody listens: a stale socket from a process that died; renaming ours over it replaces it.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(source) => Err(ServerError::Bind {
            path: path.to_owned(),
            source,
        }),
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wg::channel::{ChannelIpRecv, ChannelIpSend, IpChannelEnds, ip_channel};
    use crate::wg::device::DeviceSettings;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type TestDevice = WgDevice<ChannelIpSend, ChannelIpRecv>;

    async fn device() -> (Arc<TestDevice>, IpChannelEnds) {
        let (tx, rx, ends) = ip_channel(16, 1420);
        let settings = DeviceSettings {
            name: "uapitest".into(),
            ..DeviceSettings::default()
        };
        (
            Arc::new(WgDevice::new(settings, tx, rx).await.expect("device")),
            ends,
        )
    }

    /// Writes `request`, closes the write side, and reads everything the server answers.
    async fn exchange(device: &TestDevice, request: &[u8]) -> String {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let serving = serve_connection(server, device);
        let talking = async {
            client.write_all(request).await.expect("write");
            client.shutdown().await.expect("shutdown");
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).await.expect("read");
            reply
        };
        let ((), reply) = tokio::join!(serving, talking);
        String::from_utf8(reply).expect("replies are text")
    }

    #[tokio::test]
    async fn several_requests_on_one_connection_each_get_a_reply() {
        let (device, _ends) = device().await;
        let request = format!(
            "set=1\nlisten_port=0\nbogus=1\n\nget=1\n\nset=1\npublic_key={}\n\n",
            "ab".repeat(32)
        );
        let reply = exchange(&device, request.as_bytes()).await;
        let parts: Vec<&str> = reply.split("\n\n").collect();
        assert_eq!(parts.len(), 4, "{reply:?}");
        assert_eq!(parts[0], "errno=-22");
        assert!(
            parts[1].starts_with("listen_port=") && parts[1].ends_with("errno=0"),
            "{reply:?}"
        );
        assert_eq!(parts[2], "errno=0");
        assert!(
            device
                .uapi_get()
                .await
                .contains(&format!("public_key={}", "ab".repeat(32)))
        );
    }

    #[tokio::test]
    async fn errors_are_negative_errnos_as_wg_expects() {
        let (device, _ends) = device().await;
        for (request, expected) in [
            ("set=1\nbogus_key=1\n\n", "errno=-22\n\n"),
            ("set=1\nlisten_port=abc\n\n", "errno=-22\n\n"),
            ("set=1\nnoequals\n\n", "errno=-71\n\n"),
            ("set=1\nlisten_port=1\n", "errno=-71\n\n"),
            ("get=1\nx\n", "errno=-22\n\n"),
            ("hello\n", "errno=-22\n\n"),
            ("get=1", "errno=-71\n\n"),
        ] {
            assert_eq!(
                exchange(&device, request.as_bytes()).await,
                expected,
                "{request:?}"
            );
        }
        assert!(
            !device.uapi_get().await.contains("listen_port=1\n"),
            "a cut-short set applies nothing"
        );
    }

    #[tokio::test]
    async fn the_socket_is_owner_only_in_a_0755_directory_and_a_live_one_is_refused() {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("wireguard");
        let listener = UapiListener::bind(&dir, "wgt0").expect("bind");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(listener.path()), 0o700);
        assert!(matches!(
            UapiListener::bind(&dir, "wgt0"),
            Err(ServerError::InUse { .. })
        ));
        assert_eq!(
            std::fs::read_dir(&dir).expect("list").count(),
            1,
            "nothing left behind by the refusal"
        );
        let path = listener.path().to_owned();
        drop(listener);
        assert!(!path.exists(), "dropping the listener removes its socket");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_bad_names_are_refused() {
        let temp = tempfile::tempdir().expect("tempdir");
        let stale = temp.path().join("wgt1.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("stale socket"));
        assert!(stale.exists());
        let listener = UapiListener::bind(temp.path(), "wgt1").expect("stale socket replaced");
        assert!(std::os::unix::net::UnixStream::connect(listener.path()).is_ok());
        std::fs::write(temp.path().join("wgt2.sock"), b"").expect("a plain file");
        assert!(matches!(
            UapiListener::bind(temp.path(), "wgt2"),
            Err(ServerError::NotASocket { .. })
        ));
        for name in ["", "a/b", "..", "sixteen-chars-xx"] {
            assert!(
                matches!(
                    UapiListener::bind(temp.path(), name),
                    Err(ServerError::InvalidName { .. })
                ),
                "{name:?}"
            );
        }
    }

    #[tokio::test]
    async fn deleting_the_socket_file_ends_serving() {
        let temp = tempfile::tempdir().expect("tempdir");
        let (device, _ends) = device().await;
        let listener = UapiListener::bind(temp.path(), "wgt3").expect("bind");
        let path = listener.path().to_owned();
        let serving = tokio::spawn(listener.serve(device));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut stream = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect");
        stream.write_all(b"get=1\n\n").await.expect("write");
        let mut reply = vec![0u8; 4096];
        let n = stream.read(&mut reply).await.expect("read");
        assert!(String::from_utf8_lossy(&reply[..n]).contains("listen_port="));
        std::fs::remove_file(&path).expect("delete the socket");
        let end = tokio::time::timeout(Duration::from_secs(3), serving)
            .await
            .expect("serving ends")
            .expect("no panic");
        assert!(matches!(end, ServeEnd::SocketRemoved));
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_and_the_others_served() {
        let temp = tempfile::tempdir().expect("tempdir");
        let (device, _ends) = device().await;
        let listener = UapiListener::bind(temp.path(), "wgt4").expect("bind");
        let path = listener.path().to_owned();
        let _serving = tokio::spawn(listener.serve(device));
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(
                tokio::net::UnixStream::connect(&path)
                    .await
                    .expect("connect"),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut extra = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect");
        let _ = extra.write_all(b"get=1\n\n").await;
        let mut reply = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut reply))
            .await
            .expect("closed at once");
        assert_eq!(
            n.unwrap_or(0),
            0,
            "the connection beyond the limit was served"
        );
        drop(idle.pop());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut next = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect");
        next.write_all(b"get=1\n\n").await.expect("write");
        let n = next.read(&mut reply).await.expect("read");
        assert!(String::from_utf8_lossy(&reply[..n]).contains("listen_port="));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random input never panics, and whatever was sent gets an `errno=` reply.
        #[test]
        fn hostile_input_always_gets_a_reply(
            prefix in prop_oneof![Just(&b"set=1\n"[..]), Just(&b"get=1\n"[..]), Just(&b""[..])],
            body in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'\n'), Just(b'=')], 1..300),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let reply = runtime.block_on(async {
                let (device, _ends) = device().await;
                let mut request = prefix.to_vec();
                request.extend_from_slice(&body);
                exchange(&device, &request).await
            });
            prop_assert!(reply.contains("errno="), "no reply to {:?}{:?}", prefix, body);
            prop_assert!(reply.ends_with("\n\n"));
        }
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;
    use crate::wg::channel::ip_channel;
    use crate::wg::device::DeviceSettings;
    use crate::wg::key::Key;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Collects everything logged while it is the default subscriber.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keys_never_reach_the_log() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let private = Key([0x5a; 32]);
        let psk = Key([0x6b; 32]);
        runtime.block_on(async {
            let (tx, rx, _ends) = ip_channel(16, 1420);
            let settings = DeviceSettings { name: "logtest".into(), private_key: Some(private), ..DeviceSettings::default() };
            let device = WgDevice::new(settings, tx, rx).await.expect("device");
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let request = format!(
                "set=1\nprivate_key={}\npublic_key={}\npreshared_key={}\nbogus={}\n\nset=1\nprivate_key{}\n\n",
                private.to_hex(),
                Key([1; 32]).to_hex(),
                psk.to_hex(),
                psk.to_hex(),
                private.to_hex()
            );
            let talk = async {
                client.write_all(request.as_bytes()).await.expect("write");
                client.shutdown().await.expect("shutdown");
                let mut reply = String::new();
                client.read_to_string(&mut reply).await.expect("read");
                reply
            };
            let ((), reply) = tokio::join!(serve_connection(server, &device), talk);
            assert_eq!(reply, "errno=-22\n\nerrno=-71\n\n");
        });
        let log =
            String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("text");
        assert!(
            log.contains("UAPI set refused"),
            "the refusals were logged: {log}"
        );
        for secret in [
            private.to_hex(),
            psk.to_hex(),
            private.to_base64(),
            psk.to_base64(),
        ] {
            assert!(!log.contains(&secret), "a key reached the log:\n{log}");
        }
    }
}
