//! Whether a directory the daemon writes into (the pin directory, the BIRD routes file's
//! directory, its own state directory) is safe from other local users: one they can write to,
//! or reach through a path they control, lets them swap or plant files there (a symlink to a
//! file root then overwrites, or a pin directory they can empty, detaching XDP); and how a
//! file in such a directory is replaced in one step.

use std::{
    fs::{DirBuilder, Metadata},
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// Write permission for the group and for others.
const GROUP_OR_WORLD_WRITABLE: u32 = 0o022;
/// The sticky bit: in such a directory (/tmp, /sys/fs/bpf) only an entry's owner may rename or
/// remove it.
const STICKY: u32 = 0o1000;

/// This process's effective user.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether `owner` is this process's user or root (root can do anything anyway).
fn trusted_owner(owner: u32) -> bool {
    owner == 0 || owner == euid()
}

/// Creates `dir` (and missing parents) with `mode` if it does not exist, sets exactly `mode`
/// on each directory it creates (the umask may have narrowed it), then checks it with
/// [`check`]. An existing directory keeps its mode.
pub fn create(dir: &Path, mode: u32) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at.filter(|p| p.symlink_metadata().is_err()) {
        missing.push(path.to_path_buf());
        at = path.parent();
    }
    for path in missing.iter().rev() {
        match DirBuilder::new().mode(mode).create(path) {
            Ok(()) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting the mode of {}", path.display()))?,
            // Someone else made it first: `check` judges whether it may be used.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => {
                return Err(err).with_context(|| format!("creating directory {}", path.display()));
            }
        }
    }
    check(dir)
}

/// Replaces `path` with `bytes` and `mode` through a temporary file and a rename, so a reader
/// sees the old file or the new one, never half. The temporary file gets a random name and is
/// created with O_EXCL (never through a symlink someone planted); it is removed if anything
/// fails.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".xlb-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let write = |file: &mut tempfile::NamedTempFile| -> std::io::Result<()> {
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.as_file().sync_all()
    };
    write(&mut file).with_context(|| format!("writing {}", file.path().display()))?;
    file.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Refuses `dir` unless no other user can change what it holds: it is a directory (not a
/// symlink) owned by this user or root and writable by neither group nor others; every
/// directory above it, on the path as written and on the resolved path, is owned by this user
/// or root and writable by others only if sticky; and every symlink on the way is owned by
/// this user or root.
pub fn check(dir: &Path) -> anyhow::Result<()> {
    let meta = metadata(dir)?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        bail!(
            "{} is not a directory but a {}: remove it, and let xlb create the directory",
            dir.display(),
            if meta.file_type().is_symlink() {
                "symlink"
            } else {
                "file"
            }
        );
    }
    final_dir(dir, &meta)?;
    let real = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    for path in ancestors(dir).into_iter().chain(ancestors(&real)) {
        let meta = metadata(&path)?;
        if !trusted_owner(meta.uid()) {
            bail!(
                "{} is owned by uid {}, not by root or this user ({}): another user could swap \
                 what lies below it; use a path of root-owned directories",
                path.display(),
                meta.uid(),
                euid()
            );
        }
        let mode = meta.mode();
        if meta.is_dir() && mode & GROUP_OR_WORLD_WRITABLE != 0 && mode & STICKY == 0 {
            bail!(
                "{} is writable by other users (mode {:o}) and not sticky: they could rename \
                 {} away; use a path of directories only root can write (chmod go-w)",
                path.display(),
                mode & 0o7777,
                dir.display()
            );
        }
    }
    Ok(())
}

/// Refuses the directory itself if another user owns it or may write in it.
fn final_dir(dir: &Path, meta: &Metadata) -> anyhow::Result<()> {
    if !trusted_owner(meta.uid()) {
        bail!(
            "{} is owned by uid {}, not by root or this user ({}): another user made it and \
             could change what it holds; remove it and let xlb create it",
            dir.display(),
            meta.uid(),
            euid()
        );
    }
    let mode = meta.mode() & 0o7777;
    if mode & GROUP_OR_WORLD_WRITABLE != 0 {
        bail!(
            "{} is writable by other users (mode {mode:o}): they could plant or remove files \
             there; run `chmod go-w {}` or use a directory only root can write",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The directories above `path` (not `path` itself), outermost last.
fn ancestors(path: &Path) -> Vec<PathBuf> {
    path.ancestors().skip(1).map(Path::to_path_buf).collect()
}

fn metadata(path: &Path) -> anyhow::Result<Metadata> {
    path.symlink_metadata()
        .with_context(|| format!("inspecting {}", path.display()))
}

/// Refuses `dir` if any entry in it is a symlink or belongs to another user (a planted file).
pub fn check_entries(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let meta = metadata(&path)?;
        if meta.file_type().is_symlink() || !trusted_owner(meta.uid()) {
            bail!(
                "{} is a {} owned by uid {}: xlb's directory holds only its own files; \
                 remove it",
                path.display(),
                if meta.file_type().is_symlink() {
                    "symlink"
                } else {
                    "file"
                },
                meta.uid()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let path = std::env::temp_dir().join(format!(
                "xlb-trusted-{label}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir(&path).expect("scratch dir");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Test that `create` makes missing directories with exactly the mode asked for (umask
    /// notwithstanding) and accepts them, and that a directory others may write, a symlink in
    /// its place, or one below a non-sticky world-writable directory is refused with the path
    /// and the fix.
    #[test]
    fn only_directories_no_other_user_can_change_are_trusted() {
        let scratch = Scratch::new("modes");
        let made = scratch.0.join("a/b");
        create(&made, 0o700).expect("a fresh 0700 directory is trusted");
        let mode = made.metadata().unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);

        let loose = scratch.0.join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = format!("{:#}", check(&loose).expect_err("world-writable trusted"));
        assert!(err.contains("writable by other users (mode 777)"), "{err}");
        assert!(err.contains("chmod go-w"), "{err}");

        let below = loose.join("inner");
        std::fs::create_dir(&below).unwrap();
        std::fs::set_permissions(&below, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = format!("{:#}", check(&below).expect_err("below a 0777 dir trusted"));
        assert!(err.contains("not sticky"), "{err}");
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o1777)).unwrap();
        check(&below).expect("below a sticky dir, like /tmp or /sys/fs/bpf, is fine");

        let link = scratch.0.join("link");
        std::os::unix::fs::symlink(&made, &link).unwrap();
        let err = format!("{:#}", check(&link).expect_err("a symlink trusted"));
        assert!(err.contains("not a directory but a symlink"), "{err}");

        std::os::unix::fs::symlink("/etc/passwd", made.join("planted")).unwrap();
        let err = format!("{:#}", check_entries(&made).expect_err("planted symlink"));
        assert!(err.contains("planted is a symlink"), "{err}");
    }
}
