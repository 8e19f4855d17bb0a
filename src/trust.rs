//! Whom a file on disk can be trusted from: the rule for every file whose contents fxgraph runs as code
//! (compiled WebAssembly in the module cache, native plugin libraries, installed plugin folders).
//!
//! A file is trusted when no one but the current user (and root) can have written it, or replaced it:
//! - the file (or folder) itself is owned by the current user, or by root, and neither its group nor others
//!   may write it;
//! - every folder above it is owned by the current user or by root, and is writable by its group or by
//!   others only with the sticky bit (as `/tmp` is: there only a file's owner may rename or remove it).
//!
//! Symbolic links are followed (the folders checked are those of the real path). On other platforms than
//! Unix nothing is known of owners and modes, and nothing is trusted.

use std::path::{Path, PathBuf};

/// Why a path is not trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Untrusted {
    /// The file or folder that breaks the rule (the path given, or one of its folders).
    pub path: PathBuf,
    /// What is wrong with it, in words: "owned by user 1001", "writable by others", ...
    pub reason: String,
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {}", self.path.display(), self.reason)
    }
}

/// The current user (effective user id).
#[cfg(unix)]
#[allow(unsafe_code)] // One libc call without arguments.
pub fn current_user() -> u32 {
    // SAFETY: geteuid takes nothing, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// Checks one file or folder (not the folders above it): owned by the current user or root, and
/// writable by neither its group nor others (a folder may be, with the sticky bit, when `sticky_ok`).
#[cfg(unix)]
pub fn check_entry(path: &Path, meta: &std::fs::Metadata, sticky_ok: bool) -> Result<(), Untrusted> {
    use std::os::unix::fs::MetadataExt as _;
    let bad = |reason: String| Err(Untrusted { path: path.to_path_buf(), reason });
    let uid = meta.uid();
    if uid != current_user() && uid != 0 {
        return bad(format!("owned by user {uid}, not by this user ({}) or root", current_user()));
    }
    let mode = meta.mode();
    let sticky = meta.is_dir() && mode & 0o1000 != 0;
    if mode & 0o002 != 0 && !(sticky_ok && sticky) {
        return bad(format!("writable by others (mode {:o})", mode & 0o7777));
    }
    if mode & 0o020 != 0 && !(sticky_ok && sticky) {
        return bad(format!("writable by its group (mode {:o})", mode & 0o7777));
    }
    Ok(())
}

/// Checks that `path` (a file or a folder) and every folder above it are trusted (see the module's
/// rule). `path` must exist.
///
/// # Errors
/// The first path that breaks the rule, and why; or the path itself if it cannot be examined.
#[cfg(unix)]
pub fn check(path: &Path) -> Result<(), Untrusted> {
    let real = std::fs::canonicalize(path)
        .map_err(|e| Untrusted { path: path.to_path_buf(), reason: format!("not readable ({e})") })?;
    let meta = std::fs::metadata(&real)
        .map_err(|e| Untrusted { path: real.clone(), reason: format!("not readable ({e})") })?;
    check_entry(&real, &meta, false)?;
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir)
            .map_err(|e| Untrusted { path: dir.to_path_buf(), reason: format!("not readable ({e})") })?;
        check_entry(dir, &meta, true)?;
    }
    Ok(())
}

/// On platforms other than Unix nothing is trusted.
///
/// # Errors
/// Always.
#[cfg(not(unix))]
pub fn check(path: &Path) -> Result<(), Untrusted> {
    Err(Untrusted { path: path.to_path_buf(), reason: "on a platform where fxgraph cannot check owners".into() })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_private_file_is_trusted_and_each_way_to_let_others_write_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let file = sub.join("f");
        std::fs::write(&file, "x").expect("write");
        chmod(&file, 0o644);
        assert_eq!(check(&file), Ok(()));
        chmod(&file, 0o666);
        let e = check(&file).expect_err("world-writable file");
        assert!(e.reason.contains("writable by others") && e.path.ends_with("sub/f"), "{e}");
        chmod(&file, 0o664);
        assert!(check(&file).expect_err("group-writable file").reason.contains("group"));
        chmod(&file, 0o600);
        chmod(&sub, 0o777);
        let e = check(&file).expect_err("under a world-writable folder");
        assert!(e.path.ends_with("sub") && e.reason.contains("others"), "{e}");
        chmod(&sub, 0o1777);
        assert_eq!(check(&file), Ok(()), "a sticky folder, as /tmp");
        chmod(&sub, 0o700);
        if current_user() == 0 {
            // Only root can give a file away.
            std::os::unix::fs::chown(&file, Some(65534), None).expect("chown");
            let e = check(&file).expect_err("another user's file");
            assert!(e.reason.contains("owned by user 65534"), "{e}");
        }
    }
}
