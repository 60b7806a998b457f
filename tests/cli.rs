//! The command line as the original's users know it: `wireguard-vpp [-f|--foreground] NAME`.
//! Usage errors are an intended deviation: a message on stderr and exit status 2 (the original printed
//! its usage on stdout and exited 0).

use std::process::{Command, Output};

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wireguard-vpp"));
    cmd.args(args).env_remove("WG_PROCESS_FOREGROUND");
    for (key, value) in envs {
        cmd.env(key, value);
    }
    cmd.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_prints_name_and_version() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("wireguard-vpp {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_shows_the_drop_in_usage() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("[INTERFACE-NAME]") || help.contains("<INTERFACE-NAME>"),
        "{help}"
    );
    assert!(help.contains("-f, --foreground"), "{help}");
}

#[test]
fn usage_errors_go_to_stderr_with_status_2() {
    for args in [&[][..], &["a", "b"][..], &["-x", "wg0"][..], &["-f"][..]] {
        let out = run(args, &[]);
        assert_eq!(out.status.code(), Some(2), "args {args:?}");
        assert!(
            out.stdout.is_empty(),
            "args {args:?}: stdout {:?}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains("Usage: wireguard-vpp"),
            "args {args:?}"
        );
    }
}

#[test]
fn a_missing_interface_file_is_a_clear_error_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = dir.path().join("sockets");
    let config = dir.path().join("config");
    let out = run(
        &["-f", "wg.home"],
        &[
            ("VPP_MEMIF_CONFIG_DIR", config.to_str().unwrap()),
            ("VPP_MEMIF_SOCKET_DIR", sockets.to_str().unwrap()),
            (
                "VPP_API_SOCKET_PATH",
                dir.path().join("api.sock").to_str().unwrap(),
            ),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    // The name is sanitised as in the original (wg.home -> wghome) and the message names the file.
    assert!(stderr.contains("wghome"), "{stderr}");
    assert!(stderr.contains("if/wghome.json"), "{stderr}");
    assert!(!sockets.join("wghome.sock").exists());
}
