//! The environment variables of the original (spec 2.3), parsed once into [`Env`], with the same
//! defaults. An empty value counts as unset, as in the original.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConfigError, ConfigWarning};

/// Default of `VPP_API_SOCKET_PATH`: the VPP binary-API socket (`socksvr default`).
pub const DEFAULT_VPP_API_SOCKET: &str = "/run/vpp/api.sock";
/// Default of `VPP_MEMIF_SOCKET_DIR`: where `<name>.sock`, the memif control socket, is created.
pub const DEFAULT_MEMIF_SOCKET_DIR: &str = "/var/run/wggo-vpp";
/// Default of `VPP_MEMIF_CONFIG_DIR`: the config root holding `if/` and `gw/`.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/wggo-vpp";

/// The variables the program reads (besides `PATH`).
pub const VARIABLES: [&str; 12] = [
    "VPP_API_SOCKET_PATH",
    "VPP_MEMIF_SOCKET_DIR",
    "VPP_MEMIF_CONFIG_DIR",
    "WGGO_RECONF_INTERVAL",
    "WGGO_RECONF_PATH",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "WG_UAPI_FD",
    "WG_TUN_FD",
    "WGVPP_API_CONNECT_TIMEOUT",
    "WGVPP_MEMIF_CONNECT_TIMEOUT",
    "WGVPP_MEMIF_PEER_UID",
];

/// The process environment as the program uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Env {
    /// `VPP_API_SOCKET_PATH`.
    pub vpp_api_socket: PathBuf,
    /// `VPP_MEMIF_SOCKET_DIR`.
    pub memif_socket_dir: PathBuf,
    /// `VPP_MEMIF_CONFIG_DIR`.
    pub config_dir: PathBuf,
    /// `WGGO_RECONF_INTERVAL` and `WGGO_RECONF_PATH`, when both are set and the interval is above 0.
    pub reconf: Option<Reconf>,
    /// `LOG_LEVEL`.
    pub log_level: LogLevel,
    /// `LOG_FORMAT`: `json` for one JSON object per line (for log collectors); text otherwise.
    pub log_json: bool,
    /// `WGVPP_API_CONNECT_TIMEOUT`: how long to wait for VPP's API socket at start (not in the original).
    pub api_connect_timeout: Option<Duration>,
    /// `WGVPP_MEMIF_CONNECT_TIMEOUT`: how long to wait for VPP's first memif connection (not in the
    /// original).
    pub memif_connect_timeout: Option<Duration>,
    /// `WGVPP_MEMIF_PEER_UID`: the only uid allowed to connect to the memif sockets (not in the original).
    pub memif_peer_uid: Option<u32>,
    /// What was noticed while parsing; to be logged once logging is set up (it depends on `LOG_LEVEL`).
    pub warnings: Vec<ConfigWarning>,
}

/// Periodic `wg setconf <name> <path>` (spec section 10).
#[derive(Debug, Clone, PartialEq)]
pub struct Reconf {
    /// `WGGO_RECONF_INTERVAL`, above zero.
    pub interval: Duration,
    /// `WGGO_RECONF_PATH`: an existing file, not a folder.
    pub path: PathBuf,
}

/// `LOG_LEVEL`: the original's words (`debug`/`verbose`, `error`, `silent`) and the other levels operators
/// type (`warn`, `info`, `trace`), in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// `silent`: nothing is logged.
    Silent,
    /// `error`: failures only (the original's default).
    Error,
    /// `warn` or `warning`, the default: also what an operator should act on (a VPP that does not answer
    /// yet, a memif secret readable by everyone).
    #[default]
    Warn,
    /// `info`: also each step of a tunnel's life.
    Info,
    /// `debug` or `verbose`.
    Debug,
    /// `trace`.
    Trace,
}

impl LogLevel {
    /// The level named `value`; `None` for a word none of the levels has.
    pub fn parse(value: &str) -> Option<LogLevel> {
        Some(match value.to_ascii_lowercase().as_str() {
            "silent" => LogLevel::Silent,
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" | "verbose" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return None,
        })
    }

    /// The `tracing` filter for this level.
    pub fn level_filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            LogLevel::Silent => LevelFilter::OFF,
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

impl Default for Env {
    /// Every variable unset.
    fn default() -> Env {
        Env {
            vpp_api_socket: PathBuf::from(DEFAULT_VPP_API_SOCKET),
            memif_socket_dir: PathBuf::from(DEFAULT_MEMIF_SOCKET_DIR),
            config_dir: PathBuf::from(DEFAULT_CONFIG_DIR),
            reconf: None,
            log_level: LogLevel::default(),
            log_json: false,
            api_connect_timeout: None,
            memif_connect_timeout: None,
            memif_peer_uid: None,
            warnings: Vec::new(),
        }
    }
}

impl Env {
    /// Reads the variables of this process.
    pub fn from_process() -> Result<Env, ConfigError> {
        for var in VARIABLES {
            if let Some(value) = std::env::var_os(var)
                && value.to_str().is_none()
            {
                return Err(ConfigError::Env {
                    var,
                    value: value.to_string_lossy().into_owned(),
                    reason: "not valid UTF-8".into(),
                });
            }
        }
        Env::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads the variables through `lookup` (a map in tests). Checks `WGGO_RECONF_PATH` on disk.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Env, ConfigError> {
        let get = |var: &str| lookup(var).filter(|value| !value.is_empty());
        let mut env = Env::default();
        if let Some(path) = get("VPP_API_SOCKET_PATH") {
            env.vpp_api_socket = PathBuf::from(path);
        }
        if let Some(dir) = get("VPP_MEMIF_SOCKET_DIR") {
            env.memif_socket_dir = PathBuf::from(dir);
        }
        if let Some(dir) = get("VPP_MEMIF_CONFIG_DIR") {
            env.config_dir = PathBuf::from(dir);
        }
        if let Some(value) = get("LOG_LEVEL") {
            env.log_level = LogLevel::parse(&value).ok_or_else(|| ConfigError::Env {
                var: "LOG_LEVEL",
                value: value.clone(),
                reason: "expected one of error, warn, info, debug (or verbose), trace, silent"
                    .into(),
            })?;
        }
        if let Some(value) = get("WG_TUN_FD") {
            return Err(ConfigError::Env {
                var: "WG_TUN_FD",
                value,
                reason: "not supported: there is no TUN device (the tunnel attaches to VPP over memif); unset it".into(),
            });
        }
        if let Some(value) = get("WG_UAPI_FD") {
            return Err(ConfigError::Env {
                var: "WG_UAPI_FD",
                value,
                reason: "not supported: wireguard-vpp creates its UAPI socket itself, also when it detaches; unset it".into(),
            });
        }
        if let Some(value) = get("LOG_FORMAT") {
            env.log_json = match value.to_ascii_lowercase().as_str() {
                "json" => true,
                "text" => false,
                _ => {
                    return Err(ConfigError::Env {
                        var: "LOG_FORMAT",
                        value,
                        reason: "expected text or json".into(),
                    });
                }
            };
        }
        env.api_connect_timeout = get("WGVPP_API_CONNECT_TIMEOUT")
            .map(|v| parse_timeout("WGVPP_API_CONNECT_TIMEOUT", &v, "VPP's API socket"))
            .transpose()?;
        env.memif_connect_timeout = get("WGVPP_MEMIF_CONNECT_TIMEOUT")
            .map(|v| {
                parse_timeout(
                    "WGVPP_MEMIF_CONNECT_TIMEOUT",
                    &v,
                    "VPP's first memif connection",
                )
            })
            .transpose()?;
        env.memif_peer_uid = get("WGVPP_MEMIF_PEER_UID")
            .map(|value| {
                value.trim().parse::<u32>().map_err(|_| ConfigError::Env {
                    var: "WGVPP_MEMIF_PEER_UID",
                    value: value.clone(),
                    reason: "expected the numeric uid of VPP's process (`id -u` of its user)"
                        .into(),
                })
            })
            .transpose()?;
        let interval = get("WGGO_RECONF_INTERVAL")
            .map(|value| parse_interval(&value).map(|d| (value, d)))
            .transpose()?;
        let path = get("WGGO_RECONF_PATH")
            .map(|value| check_reconf_path(&value).map(|()| value))
            .transpose()?;
        match (interval, path) {
            (Some((_, interval)), Some(path)) if !interval.is_zero() => {
                env.reconf = Some(Reconf {
                    interval,
                    path: PathBuf::from(path),
                });
            }
            (Some((value, interval)), None) if !interval.is_zero() => {
                env.warnings.push(ConfigWarning::Env {
                    var: "WGGO_RECONF_INTERVAL",
                    value,
                    message: "has no effect without WGGO_RECONF_PATH".into(),
                })
            }
            (_, Some(path)) => env.warnings.push(ConfigWarning::Env {
                var: "WGGO_RECONF_PATH",
                value: path,
                message: "has no effect without a WGGO_RECONF_INTERVAL above 0".into(),
            }),
            _ => {}
        }
        Ok(env)
    }

    /// `<VPP_MEMIF_SOCKET_DIR>/<name>.sock`, the memif control socket of interface `name`.
    pub fn memif_socket_path(&self, name: &str) -> PathBuf {
        self.memif_socket_dir.join(format!("{name}.sock"))
    }
}

/// Seconds as a decimal number (`600`, `0.5`, `1e3`); 0 disables. The original exited on a value it
/// could not parse and silently disabled reconfiguration for a negative one; both are errors here.
/// A timeout variable: seconds to wait for `what`, fractions allowed, above 0.
fn parse_timeout(var: &'static str, value: &str, what: &str) -> Result<Duration, ConfigError> {
    match value.trim().parse::<f64>().map(Duration::try_from_secs_f64) {
        Ok(Ok(timeout)) if !timeout.is_zero() => Ok(timeout),
        _ => Err(ConfigError::Env {
            var,
            value: value.to_owned(),
            reason: format!("expected the seconds to wait for {what}, a number above 0"),
        }),
    }
}

fn parse_interval(value: &str) -> Result<Duration, ConfigError> {
    let bad = |reason: &str| ConfigError::Env {
        var: "WGGO_RECONF_INTERVAL",
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let seconds: f64 = value
        .trim()
        .parse()
        .map_err(|_| bad("not a number of seconds (e.g. 600 or 0.5)"))?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad(
            "must be a finite number of seconds, 0 or more (0 disables)",
        ));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| bad("too large a number of seconds"))
}

fn check_reconf_path(value: &str) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::Env {
        var: "WGGO_RECONF_PATH",
        value: value.to_owned(),
        reason,
    };
    match std::fs::metadata(Path::new(value)) {
        Ok(meta) if meta.is_dir() => Err(bad(
            "is a folder; give the path of a wg(8) config file".into()
        )),
        Ok(_) => Ok(()),
        Err(err) => Err(bad(format!("cannot use this wg(8) config file: {err}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|var| map.get(var).cloned())
    }

    #[test]
    fn defaults_are_the_originals() {
        let e = env(&[]).unwrap();
        assert_eq!(e, Env::default());
        assert_eq!(e.vpp_api_socket, Path::new("/run/vpp/api.sock"));
        assert_eq!(e.memif_socket_dir, Path::new("/var/run/wggo-vpp"));
        assert_eq!(e.config_dir, Path::new("/etc/wggo-vpp"));
        assert_eq!((&e.reconf, e.log_level), (&None, LogLevel::Warn));
        assert_eq!(
            e.memif_socket_path("home"),
            Path::new("/var/run/wggo-vpp/home.sock")
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let vars: Vec<(&str, &str)> = VARIABLES.iter().map(|v| (*v, "")).collect();
        assert_eq!(env(&vars).unwrap(), Env::default());
    }

    #[test]
    fn paths_are_taken_as_given() {
        let e = env(&[
            ("VPP_API_SOCKET_PATH", "/run/vpp/api2.sock"),
            ("VPP_MEMIF_SOCKET_DIR", "/run/m"),
            ("VPP_MEMIF_CONFIG_DIR", "cfg"),
        ])
        .unwrap();
        assert_eq!(e.vpp_api_socket, Path::new("/run/vpp/api2.sock"));
        assert_eq!(e.memif_socket_path("x"), Path::new("/run/m/x.sock"));
        assert_eq!(e.config_dir, Path::new("cfg"));
    }

    #[test]
    fn the_connect_timeouts_are_seconds_above_zero() {
        let e = env(&[("WGVPP_API_CONNECT_TIMEOUT", "2.5")]).unwrap();
        assert_eq!(e.api_connect_timeout, Some(Duration::from_millis(2500)));
        for bad in ["0", "-1", "ten", "NaN", "inf", "1e30"] {
            let err = env(&[("WGVPP_MEMIF_CONNECT_TIMEOUT", bad)])
                .expect_err(bad)
                .to_string();
            assert!(err.contains("WGVPP_MEMIF_CONNECT_TIMEOUT"), "{err}");
            assert!(err.contains("VPP's first memif connection"), "{err}");
        }
    }

    #[test]
    fn log_level_mapping() {
        use tracing::level_filters::LevelFilter;
        let cases = [
            ("debug", LevelFilter::DEBUG),
            ("verbose", LevelFilter::DEBUG),
            ("DEBUG", LevelFilter::DEBUG),
            ("error", LevelFilter::ERROR),
            ("warn", LevelFilter::WARN),
            ("Warning", LevelFilter::WARN),
            ("info", LevelFilter::INFO),
            ("trace", LevelFilter::TRACE),
            ("silent", LevelFilter::OFF),
        ];
        for (value, filter) in cases {
            let e = env(&[("LOG_LEVEL", value)]).unwrap();
            assert_eq!(e.log_level.level_filter(), filter, "{value}");
        }
        let err = env(&[("LOG_LEVEL", "loud")]).unwrap_err().to_string();
        assert!(err.contains("LOG_LEVEL") && err.contains("loud"), "{err}");
    }

    #[test]
    fn reconf_needs_both_variables() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("home.conf");
        std::fs::write(&conf, "[Interface]\n").unwrap();
        let conf = conf.to_str().unwrap();

        let e = env(&[("WGGO_RECONF_INTERVAL", "600"), ("WGGO_RECONF_PATH", conf)]).unwrap();
        assert_eq!(
            e.reconf,
            Some(Reconf {
                interval: Duration::from_secs(600),
                path: conf.into()
            })
        );
        let e = env(&[("WGGO_RECONF_INTERVAL", "0.5"), ("WGGO_RECONF_PATH", conf)]).unwrap();
        assert_eq!(
            e.reconf.map(|r| r.interval),
            Some(Duration::from_millis(500))
        );

        let e = env(&[("WGGO_RECONF_INTERVAL", "0"), ("WGGO_RECONF_PATH", conf)]).unwrap();
        assert_eq!(e.reconf, None);
        assert!(
            e.warnings[0].to_string().contains("WGGO_RECONF_PATH"),
            "{:?}",
            e.warnings
        );
        let e = env(&[("WGGO_RECONF_INTERVAL", "600")]).unwrap();
        assert_eq!(e.reconf, None);
        assert!(
            e.warnings[0]
                .to_string()
                .contains("no effect without WGGO_RECONF_PATH")
        );
    }

    #[test]
    fn bad_values_are_errors_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().to_str().unwrap();
        let missing = dir.path().join("missing.conf");
        let missing = missing.to_str().unwrap();
        let cases: &[(&str, &str, &str)] = &[
            ("WGGO_RECONF_INTERVAL", "ten", "not a number of seconds"),
            ("WGGO_RECONF_INTERVAL", "-1", "0 or more"),
            ("WGGO_RECONF_INTERVAL", "NaN", "finite"),
            ("WGGO_RECONF_INTERVAL", "inf", "finite"),
            ("WGGO_RECONF_INTERVAL", "1e300", "too large"),
            ("WGGO_RECONF_PATH", folder, "is a folder"),
            (
                "WGGO_RECONF_PATH",
                missing,
                "cannot use this wg(8) config file",
            ),
            ("WG_TUN_FD", "3", "not supported"),
            ("WG_UAPI_FD", "4", "not supported"),
        ];
        for (var, value, reason) in cases {
            let err = env(&[(var, value)]).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("environment variable {var}={value:?}: ")),
                "{text}"
            );
            assert!(text.contains(reason), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_values_parse_or_fail_without_panic(values in proptest::collection::vec(".{0,16}", 8)) {
            let vars: Vec<(&str, &str)> = VARIABLES.iter().copied().zip(values.iter().map(String::as_str)).collect();
            let _ = env(&vars);
        }
    }
}
