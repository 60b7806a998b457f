//! The `set=1` body of the cross-platform UAPI protocol: one `key=value` line at a time into a
//! [`Command`], with the errno that wireguard-go (and so `wg`) expects for each kind of bad line.
//!
//! The parser is pure and keeps only the state the grammar needs (device keys first, then peer
//! sections opened by `public_key=`). It knows nothing of sockets or of the device.

use std::net::SocketAddr;

use ipnet::IpNet;

use crate::wg::key::Key;

/// `EINVAL`: unknown key, bad value, bad boolean, bad protocol version.
pub const EINVAL: i32 = libc::EINVAL;
/// `EPROTO`: a line without `=`, or a request cut short.
pub const EPROTO: i32 = libc::EPROTO;
/// `EADDRINUSE`: the UDP socket could not be bound, or its fwmark not set.
pub const EADDRINUSE: i32 = libc::EADDRINUSE;
/// `EIO`: reading the request failed.
pub const EIO: i32 = libc::EIO;

/// One applied line of a `set=1` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `private_key=`; `None` for the all-zero key, which removes it.
    PrivateKey(Option<Key>),
    /// `listen_port=`; 0 picks a random port.
    ListenPort(u16),
    /// `fwmark=`; 0 removes the mark.
    Fwmark(u32),
    /// `replace_peers=true`.
    ReplacePeers,
    /// `public_key=`: opens a peer section; the following peer commands apply to this peer.
    Peer(Key),
    /// `update_only=true`: do not create the current peer if it does not exist.
    UpdateOnly,
    /// `remove=true`: remove the current peer.
    Remove,
    /// `preshared_key=`; `None` for the all-zero key.
    PresharedKey(Option<Key>),
    /// `endpoint=`.
    Endpoint(SocketAddr),
    /// `persistent_keepalive_interval=`; 0 disables.
    PersistentKeepalive(u16),
    /// `replace_allowed_ips=true`.
    ReplaceAllowedIps,
    /// `allowed_ip=prefix` (stored masked to its network).
    AllowedIp(IpNet),
    /// `allowed_ip=-prefix`: removes one entry.
    RemoveAllowedIp(IpNet),
    /// `protocol_version=1`, the only version there is: changes nothing.
    ProtocolVersion,
}

/// A refused request: the errno (positive, as in `errno.h`) and a message for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (errno {errno})")]
pub struct UapiError {
    /// Positive `errno.h` value; the reply to `set` carries it negated.
    pub errno: i32,
    /// What was wrong, naming the line or the key. Never contains key material.
    pub message: String,
}

impl UapiError {
    pub(crate) fn new(errno: i32, message: impl Into<String>) -> UapiError {
        UapiError {
            errno,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> UapiError {
        UapiError::new(EINVAL, message)
    }
}

/// Parses the lines of one `set=1` request in order. Device keys are accepted until the first
/// `public_key=`; after it only peer keys are (as in wireguard-go).
#[derive(Debug, Default)]
pub struct SetParser {
    in_peer_section: bool,
}

impl SetParser {
    /// Parses one line (without its newline).
    pub fn parse_line(&mut self, line: &[u8]) -> Result<Command, UapiError> {
        let Ok(line) = std::str::from_utf8(line) else {
            return Err(UapiError::invalid("line is not UTF-8"));
        };
        let Some((key, value)) = line.split_once('=') else {
            // The line is not echoed: it might be a mangled key.
            return Err(UapiError::new(
                EPROTO,
                format!("a line of {} bytes without '='", line.len()),
            ));
        };
        if key == "public_key" {
            self.in_peer_section = true;
            return Ok(Command::Peer(parse_key(key, value)?));
        }
        if self.in_peer_section {
            parse_peer_line(key, value)
        } else {
            parse_device_line(key, value)
        }
    }
}

fn parse_device_line(key: &str, value: &str) -> Result<Command, UapiError> {
    match key {
        "private_key" => Ok(Command::PrivateKey(non_zero(parse_key(key, value)?))),
        "listen_port" => Ok(Command::ListenPort(parse_number(key, value)?)),
        "fwmark" => Ok(Command::Fwmark(parse_number(key, value)?)),
        "replace_peers" => parse_true(key, value).map(|()| Command::ReplacePeers),
        "protocol_version" => Err(UapiError::invalid("protocol_version is a peer key")),
        _ => Err(UapiError::invalid(format!(
            "invalid UAPI device key: {:?}",
            truncated(key)
        ))),
    }
}

fn parse_peer_line(key: &str, value: &str) -> Result<Command, UapiError> {
    match key {
        "update_only" => parse_true(key, value).map(|()| Command::UpdateOnly),
        "remove" => parse_true(key, value).map(|()| Command::Remove),
        "preshared_key" => Ok(Command::PresharedKey(non_zero(parse_key(key, value)?))),
        "endpoint" => parse_endpoint(value).map(Command::Endpoint).ok_or_else(|| {
            UapiError::invalid(format!("endpoint {:?} is not IP:port", truncated(value)))
        }),
        "persistent_keepalive_interval" => {
            Ok(Command::PersistentKeepalive(parse_number(key, value)?))
        }
        "replace_allowed_ips" => parse_true(key, value).map(|()| Command::ReplaceAllowedIps),
        "allowed_ip" => match value.strip_prefix('-') {
            Some(prefix) => parse_prefix(prefix).map(Command::RemoveAllowedIp),
            None => parse_prefix(value).map(Command::AllowedIp),
        },
        "protocol_version" if value == "1" => Ok(Command::ProtocolVersion),
        "protocol_version" => Err(UapiError::invalid(format!(
            "invalid protocol version: {:?}",
            truncated(value)
        ))),
        _ => Err(UapiError::invalid(format!(
            "invalid UAPI peer key: {:?}",
            truncated(key)
        ))),
    }
}

/// `IPv4:port`, `[IPv6]:port`, or `[IPv6%zone]:port` with a numeric zone or an interface name (a
/// link-local endpoint, as `wg` sends it for DN42-style peerings over a LAN).
pub fn parse_endpoint(value: &str) -> Option<SocketAddr> {
    if let Ok(addr) = value.parse() {
        return Some(addr);
    }
    let (host, port) = value.strip_prefix('[')?.split_once("]:")?;
    let (ip, zone) = host.split_once('%')?;
    let ip: std::net::Ipv6Addr = ip.parse().ok()?;
    let port: u16 = port.parse().ok()?;
    let scope_id = match zone.parse::<u32>() {
        Ok(index) => index,
        Err(_) => interface_index(zone)?,
    };
    Some(SocketAddr::V6(std::net::SocketAddrV6::new(
        ip, port, 0, scope_id,
    )))
}

/// The index of a network interface, read from sysfs (no FFI needed).
fn interface_index(name: &str) -> Option<u32> {
    let safe = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !safe || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn parse_key(name: &str, value: &str) -> Result<Key, UapiError> {
    Key::from_hex(value).map_err(|e| UapiError::invalid(format!("{name}: {e}")))
}

fn non_zero(key: Key) -> Option<Key> {
    (!key.is_zero()).then_some(key)
}

fn parse_number<N: std::str::FromStr>(name: &str, value: &str) -> Result<N, UapiError> {
    // FromStr accepts a leading '+', strconv.ParseUint does not.
    if value.starts_with('+') {
        return Err(UapiError::invalid(format!(
            "{name}: {:?} is not a number",
            truncated(value)
        )));
    }
    value.parse().map_err(|_| {
        UapiError::invalid(format!(
            "{name}: {:?} is not a number in range",
            truncated(value)
        ))
    })
}

fn parse_true(name: &str, value: &str) -> Result<(), UapiError> {
    if value == "true" {
        Ok(())
    } else {
        Err(UapiError::invalid(format!(
            "{name}: invalid value {:?}, only \"true\" is allowed",
            truncated(value)
        )))
    }
}

fn parse_prefix(value: &str) -> Result<IpNet, UapiError> {
    value.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| {
        UapiError::invalid(format!("allowed_ip {:?} is not IP/cidr", truncated(value)))
    })
}

/// Keeps hostile lines short in error messages and logs.
fn truncated(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(lines: &[&str]) -> Vec<Result<Command, UapiError>> {
        let mut parser = SetParser::default();
        lines
            .iter()
            .map(|l| parser.parse_line(l.as_bytes()))
            .collect()
    }

    fn errno(result: &Result<Command, UapiError>) -> i32 {
        result.as_ref().err().map_or(0, |e| e.errno)
    }

    #[test]
    fn what_wg_set_sends_parses_in_order() {
        let key = "11".repeat(32);
        let peer = "22".repeat(32);
        let lines = [
            format!("private_key={key}"),
            "listen_port=51998".into(),
            "fwmark=16".into(),
            format!("public_key={peer}"),
            format!("preshared_key={}", "00".repeat(32)),
            "endpoint=[fd00::9]:51820".into(),
            "persistent_keepalive_interval=0".into(),
            "replace_allowed_ips=true".into(),
            "allowed_ip=10.1.2.3/16".into(),
            "allowed_ip=-fd01::/64".into(),
            "protocol_version=1".into(),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let parsed: Vec<Command> = parse_all(&lines)
            .into_iter()
            .map(|r| r.expect("valid line"))
            .collect();
        assert_eq!(
            parsed,
            vec![
                Command::PrivateKey(Some(Key([0x11; 32]))),
                Command::ListenPort(51998),
                Command::Fwmark(16),
                Command::Peer(Key([0x22; 32])),
                Command::PresharedKey(None),
                Command::Endpoint("[fd00::9]:51820".parse().expect("literal")),
                Command::PersistentKeepalive(0),
                Command::ReplaceAllowedIps,
                Command::AllowedIp("10.1.0.0/16".parse().expect("literal")),
                Command::RemoveAllowedIp("fd01::/64".parse().expect("literal")),
                Command::ProtocolVersion,
            ]
        );
    }

    #[test]
    fn errors_carry_the_errno_wireguard_go_uses() {
        let peer = format!("public_key={}", "22".repeat(32));
        let cases: &[(&[&str], i32)] = &[
            (&["bogus_key=1"], EINVAL),
            (&["listen_port=abc"], EINVAL),
            (&["listen_port=65536"], EINVAL),
            (&["listen_port=+1"], EINVAL),
            (&["noequals"], EPROTO),
            (&["protocol_version=1"], EINVAL),
            (&["replace_peers=yes"], EINVAL),
            (&[&peer, "protocol_version=2"], EINVAL),
            (&[&peer, "listen_port=1"], EINVAL),
            (&[&peer, "endpoint=host.example:1"], EINVAL),
            (&[&peer, "allowed_ip=10.0.0.0/33"], EINVAL),
            (&[&peer, "remove=false"], EINVAL),
            (&["public_key=abc"], EINVAL),
        ];
        for (lines, expected) in cases {
            let results = parse_all(lines);
            let last = results.last().expect("one line at least");
            assert_eq!(errno(last), *expected, "{lines:?}");
        }
    }

    #[test]
    fn link_local_endpoints_keep_their_zone() {
        let by_index = parse_endpoint("[fe80::1%1]:51820").expect("numeric zone");
        let by_name = parse_endpoint("[fe80::1%lo]:51820").expect("interface name");
        assert_eq!(by_index, by_name, "lo is interface 1");
        assert_eq!(by_index.to_string(), "[fe80::1%1]:51820");
        assert_eq!(parse_endpoint("[fe80::1%../x]:1"), None);
        assert_eq!(parse_endpoint("[fe80::1%nosuchif0]:1"), None);
    }

    #[test]
    fn protocol_version_1_is_accepted_as_a_no_op_peer_line() {
        let peer = format!("public_key={}", "22".repeat(32));
        let results = parse_all(&[&peer, "protocol_version=1"]);
        assert!(results.iter().all(Result::is_ok));
    }

    proptest! {
        #[test]
        fn hostile_lines_never_panic(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..20)) {
            let mut parser = SetParser::default();
            for line in lines {
                let _ = parser.parse_line(&line);
            }
        }

        #[test]
        fn plausible_lines_never_panic(key in "[a-z_]{0,30}", value in "[-0-9a-f:.\\[\\]/]{0,70}") {
            let mut parser = SetParser::default();
            let _ = parser.parse_line(format!("{key}={value}").as_bytes());
            let _ = parser.parse_line(format!("public_key={}", "ab".repeat(32)).as_bytes());
            let _ = parser.parse_line(format!("{key}={value}").as_bytes());
        }
    }
}
