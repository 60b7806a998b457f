//! Where the files are and reading them: the current layout (`if/<name>.json`, `gw/<id>.json`) and the
//! older flat one (`if.<name>.json`, `gw.<id>.json`) that the original's README still documents.
//! When both exist the sub-directory file is used and a warning names the other.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::file::{FileDecodeError, GatewayFile, InterfaceFile, Parsed};
use super::{ConfigError, ConfigWarning};

/// Which of the two layouts a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Layout {
    /// `<kind>/<stem>.json`, the current one; it wins.
    SubDir,
    /// `<kind>.<stem>.json`, the older one.
    Flat,
}

/// The two places a file can be: `dir/kind/stem.json` and `dir/kind.stem.json`.
pub(crate) fn candidates(dir: &Path, kind: &str, stem: &str) -> [PathBuf; 2] {
    [
        dir.join(kind).join(format!("{stem}.json")),
        dir.join(format!("{kind}.{stem}.json")),
    ]
}

/// Finds the file of `kind` (`if` or `gw`) named `stem` under `dir` in either layout.
pub(crate) fn locate(
    dir: &Path,
    kind: &str,
    stem: &str,
    what: &str,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<PathBuf, ConfigError> {
    let [sub_dir, flat] = candidates(dir, kind, stem);
    let sub_dir_exists = exists(&sub_dir)?;
    let flat_exists = exists(&flat)?;
    match (sub_dir_exists, flat_exists) {
        (true, true) => {
            warnings.push(ConfigWarning::BothLayouts {
                used: sub_dir.clone(),
                ignored: flat,
            });
            Ok(sub_dir)
        }
        (true, false) => Ok(sub_dir),
        (false, true) => Ok(flat),
        (false, false) => Err(ConfigError::NotFound {
            what: what.to_owned(),
            tried: [sub_dir, flat],
        }),
    }
}

/// Whether `path` exists; a path that cannot be looked at (a folder without permission) is an error
/// rather than a silent fall-back to the other layout.
fn exists(path: &Path) -> Result<bool, ConfigError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ConfigError::Read {
            file: path.to_owned(),
            source,
        }),
    }
}

/// Reads and decodes an interface file; its unknown keys become warnings.
pub(crate) fn read_interface(
    path: &Path,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<InterfaceFile, ConfigError> {
    read(path, InterfaceFile::parse, warnings)
}

/// Reads and decodes a gateway file; its unknown keys become warnings.
pub(crate) fn read_gateway(
    path: &Path,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<GatewayFile, ConfigError> {
    read(path, GatewayFile::parse, warnings)
}

fn read<T>(
    path: &Path,
    parse: fn(&[u8]) -> Result<Parsed<T>, FileDecodeError>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<T, ConfigError> {
    let bytes = read_bounded(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })?;
    let parsed = parse(&bytes).map_err(|err| decode_error(path, err))?;
    let unknown = parsed
        .unknown_keys
        .into_iter()
        .map(|key| ConfigWarning::UnknownKey {
            file: path.to_owned(),
            key,
        });
    let ignored = parsed.ignored.into_iter().map(|e| ConfigWarning::Ignored {
        file: path.to_owned(),
        field: e.key,
        message: format!("ignored: {}", e.reason),
    });
    warnings.extend(unknown.chain(ignored));
    Ok(parsed.file)
}

/// A warning when `path`, which holds a secret, can be read by every user of the machine.
pub(crate) fn check_secret_file_mode(path: &Path, warnings: &mut Vec<ConfigWarning>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        warnings.push(ConfigWarning::ReadableSecret {
            file: path.to_owned(),
            mode,
        });
    }
}

/// The largest config file read: far beyond any real one, small enough that a stray huge file (the
/// conflict check scans whole folders) cannot exhaust memory.
pub(crate) const FILE_SIZE_MAX: u64 = 1 << 20;

/// Reads a whole file of at most [`FILE_SIZE_MAX`] bytes.
pub(crate) fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(FILE_SIZE_MAX + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > FILE_SIZE_MAX {
        return Err(std::io::Error::other(format!(
            "larger than {FILE_SIZE_MAX} bytes, which no config file is"
        )));
    }
    Ok(bytes)
}

pub(crate) fn decode_error(path: &Path, err: FileDecodeError) -> ConfigError {
    match err {
        FileDecodeError::Syntax(source) => ConfigError::Syntax {
            file: path.to_owned(),
            source,
        },
        FileDecodeError::Type(e) => ConfigError::Type {
            file: path.to_owned(),
            key: e.key,
            reason: e.reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::write;
    use super::*;

    #[test]
    fn sub_directory_layout_wins_over_flat_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let mut warnings = Vec::new();
        write(dir.path(), "if.home.json", "{}");
        let found = locate(dir.path(), "if", "home", "interface config", &mut warnings).unwrap();
        assert_eq!(
            (found, warnings.len()),
            (dir.path().join("if.home.json"), 0)
        );

        write(dir.path(), "if/home.json", "{}");
        let found = locate(dir.path(), "if", "home", "interface config", &mut warnings).unwrap();
        assert_eq!(found, dir.path().join("if/home.json"));
        assert_eq!(
            warnings,
            [ConfigWarning::BothLayouts {
                used: dir.path().join("if/home.json"),
                ignored: dir.path().join("if.home.json")
            }]
        );
    }

    #[test]
    fn missing_file_names_both_places() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(
            dir.path(),
            "gw",
            "4242",
            "gateway config of bridge 4242",
            &mut Vec::new(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("gateway config of bridge 4242 not found: neither "),
            "{text}"
        );
        assert!(
            text.contains("gw/4242.json nor ") && text.ends_with("gw.4242.json exists"),
            "{text}"
        );
    }

    #[test]
    fn read_errors_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "if/home.json", r#"{"uid": "3"}"#);
        write(dir.path(), "if/broken.json", r#"{"uid": 3"#);
        write(dir.path(), "if/folder.json/x", "");
        let path = dir.path().join("if/home.json");
        let err = read_interface(&path, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                r#"{}: key "uid": expected an unsigned 32-bit integer, found a string "3""#,
                path.display()
            )
        );
        let path = dir.path().join("if/broken.json");
        let err = read_interface(&path, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{}: not valid JSON: EOF while parsing",
                path.display()
            )),
            "{err}"
        );
        let path = dir.path().join("if/folder.json");
        let err = read_interface(&path, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn oversized_files_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("if.huge.json");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(FILE_SIZE_MAX + 1).unwrap();
        let err = read_interface(&path, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("cannot read: larger than 1048576 bytes, which no config file is"),
            "{err}"
        );
        file.set_len(FILE_SIZE_MAX).unwrap();
        let err = read_interface(&path, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not valid JSON"),
            "exactly the limit is read: {err}"
        );
    }

    #[test]
    fn a_secret_in_a_world_readable_file_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("if.home.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut warnings = Vec::new();
        check_secret_file_mode(&path, &mut warnings);
        assert!(
            warnings[0]
                .to_string()
                .contains("every user can read it (mode 644)"),
            "{warnings:?}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut warnings = Vec::new();
        check_secret_file_mode(&path, &mut warnings);
        assert_eq!(warnings, []);
    }

    #[test]
    fn unknown_keys_become_warnings() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "gw/1.json",
            r#"{"GatewayMacAddr": "x", "Colour": "blue"}"#,
        );
        let path = dir.path().join("gw/1.json");
        let mut warnings = Vec::new();
        read_gateway(&path, &mut warnings).unwrap();
        assert_eq!(
            warnings,
            [ConfigWarning::UnknownKey {
                file: path,
                key: "Colour".into()
            }]
        );
    }
}
