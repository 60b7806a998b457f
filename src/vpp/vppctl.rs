//! The `vppctl` install method: runs the configured vppctl binary with the original's exact CLI commands for
//! host routes and neighbour entries. A failure carries the command, the exit status and what vppctl
//! printed. The VPP CLI reports many errors on stdout with exit status 0, and the commands used here print
//! nothing on success, so any output is treated as a failure too.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::types::{IpNeighborFlags, MacAddr, Prefix};

/// A vppctl command that failed.
#[derive(Debug, thiserror::Error)]
pub enum VppctlError {
    /// The binary could not be started.
    #[error("cannot run `{binary}` (VppBridgeLoop_VppctlBinary): {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    /// It ran longer than the timeout and was killed.
    #[error("`{binary} {command}` did not finish within {after:?}")]
    Timeout {
        binary: String,
        command: String,
        after: Duration,
    },
    /// It exited with a failure status or printed an error.
    #[error("`{binary} {command}` failed ({status}): {output}")]
    Failed {
        binary: String,
        command: String,
        status: String,
        output: String,
    },
}

/// Runs VPP CLI commands through a vppctl binary.
#[derive(Debug, Clone)]
pub struct Vppctl {
    /// The binary, as a path or a name looked up in `PATH`.
    pub binary: PathBuf,
    /// The longest a command may run.
    pub timeout: Duration,
}

impl Vppctl {
    /// vppctl at `binary` with a 10 s timeout.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Runs `vppctl <args…>`; a non-zero exit status or any output is a failure carrying what it printed.
    pub async fn run(&self, args: &[String]) -> Result<(), VppctlError> {
        let binary = self.binary.display().to_string();
        let command = args.join(" ");
        let child = tokio::process::Command::new(&self.binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| VppctlError::Spawn {
                binary: binary.clone(),
                source,
            })?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| VppctlError::Timeout {
                binary: binary.clone(),
                command: command.clone(),
                after: self.timeout,
            })?
            .map_err(|source| VppctlError::Spawn {
                binary: binary.clone(),
                source,
            })?;
        let printed = [output.stderr.as_slice(), output.stdout.as_slice()]
            .iter()
            .map(|b| String::from_utf8_lossy(b).trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        if output.status.success() && printed.is_empty() {
            return Ok(());
        }
        Err(VppctlError::Failed {
            binary,
            command,
            status: output.status.to_string(),
            output: if printed.is_empty() {
                "no output".to_owned()
            } else {
                printed
            },
        })
    }
}

/// `ip route add <ip>/<len> via <bvi>` (or `del`): a host route attached to the BVI (see
/// [`super::FibPath::attached`]).
pub fn route_command(is_add: bool, prefix: Prefix, bvi_name: &str) -> Vec<String> {
    let verb = if is_add { "add" } else { "del" };
    ["ip", "route", verb, &prefix.to_string(), "via", bvi_name]
        .map(str::to_owned)
        .to_vec()
}

/// `set ip neighbor [del] <bvi> <ip> <mac> [static] [no-fib-entry]`.
pub fn neighbour_command(
    is_add: bool,
    bvi_name: &str,
    ip: IpAddr,
    mac: MacAddr,
    flags: IpNeighborFlags,
) -> Vec<String> {
    let mut args: Vec<String> = ["set", "ip", "neighbor"].map(str::to_owned).to_vec();
    if !is_add {
        args.push("del".to_owned());
    }
    args.extend([bvi_name.to_owned(), ip.to_string(), mac.to_string()]);
    if is_add && flags.contains(IpNeighborFlags::STATIC) {
        args.push("static".to_owned());
    }
    if is_add && flags.contains(IpNeighborFlags::NO_FIB_ENTRY) {
        args.push("no-fib-entry".to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_the_originals() {
        let ip: IpAddr = "172.22.77.33".parse().unwrap();
        assert_eq!(
            route_command(true, Prefix::host(ip), "loop42").join(" "),
            "ip route add 172.22.77.33/32 via loop42"
        );
        let mac = "98:d2:93:00:00:03".parse().unwrap();
        assert_eq!(
            neighbour_command(
                true,
                "loop42",
                ip,
                mac,
                IpNeighborFlags::STATIC | IpNeighborFlags::NO_FIB_ENTRY
            )
            .join(" "),
            "set ip neighbor loop42 172.22.77.33 98:d2:93:00:00:03 static no-fib-entry"
        );
        assert_eq!(
            neighbour_command(false, "loop42", ip, mac, IpNeighborFlags::STATIC).join(" "),
            "set ip neighbor del loop42 172.22.77.33 98:d2:93:00:00:03"
        );
    }
}
