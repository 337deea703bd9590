//! Whether the config file may have changed since the daemon last dealt with its bytes, told
//! from its metadata: the tick asks every second, and reading and comparing a 10 MB file each
//! time cost more than the rest of an idle second.

use std::{
    os::unix::fs::MetadataExt as _,
    path::Path,
    time::{Duration, SystemTime},
};

/// How old a file's last change must be before its metadata alone vouches for its bytes: a
/// write within the same timestamp granule as the look before it (coarse clocks, file systems
/// that store seconds) leaves the metadata as it was, so a fresh file is read every tick
/// until its change is this old.
const RACY: Duration = Duration::from_secs(2);

/// What identifies one version of the file: the inode it resolves to (an editor's atomic
/// rename makes another one), its length, and its modification and change times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    /// The stamp of `path` (through symlinks), or `None` if it cannot be read.
    pub fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// Whether the file's last change is at least [`RACY`] older than `now`.
    fn settled_at(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let latest = self.modified.max(self.changed);
        let Ok(seconds) = u64::try_from(latest.0) else {
            return false;
        };
        let nanos = u32::try_from(latest.1).unwrap_or(0);
        Duration::new(seconds, nanos) + RACY <= now
    }
}

/// The stamp of the file whose bytes the daemon last dealt with (applied, or rejected).
#[derive(Debug, Default)]
pub struct Watch {
    seen: Option<Stamp>,
}

impl Watch {
    /// Whether the file still has the stamp seen last, and that stamp is old enough to be
    /// trusted: then its bytes are those dealt with, and it need not be read.
    pub fn unchanged(&self, stamp: Option<Stamp>) -> bool {
        self.unchanged_at(stamp, SystemTime::now())
    }

    fn unchanged_at(&self, stamp: Option<Stamp>, now: SystemTime) -> bool {
        stamp.is_some_and(|stamp| self.seen == Some(stamp) && stamp.settled_at(now))
    }

    /// Records that the bytes read after taking `stamp` were dealt with.
    pub fn saw(&mut self, stamp: Option<Stamp>) {
        self.seen = stamp;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in a directory of its own, removed with it.
    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("xlb.toml");
        std::fs::write(&path, text).expect("writing the file");
        (dir, path)
    }

    /// Sets the file's modification time `ago` back; its change time moves to now.
    fn age(path: &Path, ago: Duration) {
        let file = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("opening the file");
        file.set_modified(SystemTime::now() - ago)
            .expect("setting the modification time");
    }

    #[test]
    fn an_old_unchanged_stamp_vouches_for_the_file() {
        // Test that a stamp seen before, once its change is older than RACY, is unchanged;
        // one not seen yet, another one, or none (an unreadable file) is not.
        let (_dir, path) = file("a");
        let stamp = Stamp::of(&path).expect("a stamp");
        let mut watch = Watch::default();
        let later = SystemTime::now() + RACY;
        assert!(!watch.unchanged_at(Some(stamp), later));
        watch.saw(Some(stamp));
        assert_eq!(Stamp::of(&path), Some(stamp), "a look changes nothing");
        assert!(watch.unchanged_at(Some(stamp), later));
        let other = Stamp { len: 2, ..stamp };
        assert!(!watch.unchanged_at(Some(other), later));
        assert!(!watch.unchanged_at(None, later));
    }

    #[test]
    fn a_fresh_file_is_not_trusted() {
        // Test that a stamp whose change is younger than RACY does not vouch for the file,
        // however often it was seen: a second write in the same granule would not show.
        let (_dir, path) = file("a");
        let stamp = Stamp::of(&path).expect("a stamp");
        let mut watch = Watch::default();
        watch.saw(Some(stamp));
        assert!(!watch.unchanged(Some(stamp)));
    }

    #[test]
    fn rewrites_and_renames_change_the_stamp() {
        // Test that writing other bytes of the same length, appending, and renaming another
        // file over the path (as editors save) each give another stamp.
        let (dir, path) = file("aaaa");
        let first = Stamp::of(&path).expect("a stamp");
        age(&path, Duration::from_secs(60));
        let aged = Stamp::of(&path).expect("a stamp");
        assert_ne!(first, aged);
        std::fs::write(&path, "bbbb").expect("rewriting");
        let rewritten = Stamp::of(&path).expect("a stamp");
        assert_ne!(aged, rewritten);
        std::fs::write(&path, "bbbbb").expect("appending");
        let longer = Stamp::of(&path).expect("a stamp");
        assert_ne!(rewritten.len, longer.len);
        let other = dir.path().join("xlb.toml.new");
        std::fs::write(&other, "bbbbb").expect("writing the new file");
        std::fs::rename(&other, &path).expect("renaming it over");
        let renamed = Stamp::of(&path).expect("a stamp");
        assert_ne!(longer.inode, renamed.inode);
    }
}
