//! State files that hold personal data: the disk buffer and the enrichment store under
//! `data_dir`, and the dead letter. Each is created owner-only from its first byte (folders
//! 0700, files 0600), and one that already exists is checked when the sink opens it: open to
//! other users, it is reported (or, with `fbpixel run --strict-permissions`, refused).
//!
//! Modes are given at creation (`DirBuilder`/`OpenOptions` with a mode), never fixed up with a
//! `chmod` afterwards, so there is no moment when another user can open the file. The umask can
//! only take bits away, so it never widens these modes.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::path::Path;

/// The mode of a folder fbpixel creates for its state.
pub const DIR_MODE: u32 = 0o700;
/// The mode of a state file fbpixel creates.
pub const FILE_MODE: u32 = 0o600;

/// What to do with an existing state file or folder that other users can read or write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Permissions {
    /// Log a warning naming it and the `chmod` that fixes it, and go on.
    #[default]
    Warn,
    /// Refuse to start (`fbpixel run --strict-permissions`).
    Strict,
}

/// Create `dir` and any missing parent, each new one with mode 0700. Folders that already
/// exist are left as they are ([`check`] reports them).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir)
}

/// Options that create a missing file with mode 0600 (an existing file keeps its mode).
pub fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    options
}

/// Create the file at `path` with mode 0600 unless it exists (its content is left alone), so
/// that a library that opens it by path (redb) finds it owner-only.
pub fn create_file(path: &Path) -> io::Result<File> {
    file_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Check that other users can neither read nor write `path` (a file or folder; a missing one
/// passes). When they can: a warning naming it, its mode and the `chmod` that fixes it, or
/// with [`Permissions::Strict`] an error saying the same. Never reads the file.
pub fn check(path: &Path, permissions: Permissions) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(metadata) = std::fs::metadata(path) else {
            return Ok(());
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return Ok(());
        }
        let fix = if metadata.is_dir() {
            DIR_MODE
        } else {
            FILE_MODE
        };
        let problem = format!(
            "{} has mode {mode:04o}: other users can read or change it, and it may hold personal data; run `chmod {fix:o} {}`",
            path.display(),
            path.display()
        );
        match permissions {
            Permissions::Warn => {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{mode:04o}"),
                    "{problem} (fbpixel run --strict-permissions refuses to start in this case)"
                );
                Ok(())
            }
            Permissions::Strict => Err(format!(
                "{problem}, then start again (--strict-permissions refuses state files other users can open)"
            )),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, permissions);
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "fbpixel-state-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_folders_and_files_are_owner_only_and_existing_content_is_kept() {
        let root = temp("create");
        let dir = root.join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("f");
        create_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        std::fs::write(&file, "kept").unwrap();
        create_file(&file).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
        assert!(check(&dir, Permissions::Strict).is_ok());
        assert!(check(&file, Permissions::Strict).is_ok());
        assert!(check(&root.join("missing"), Permissions::Strict).is_ok());
    }

    #[test]
    fn a_file_others_can_read_is_refused_when_strict_with_the_chmod_that_fixes_it() {
        let root = temp("open");
        create_dir(&root).unwrap();
        let file = root.join("f");
        std::fs::write(&file, "secret@example.com").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check(&file, Permissions::Warn).is_ok());
        let e = check(&file, Permissions::Strict).unwrap_err();
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains("0644"), "{e}");
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = check(&root, Permissions::Strict).unwrap_err();
        assert!(e.contains("chmod 700"), "{e}");
    }
}
