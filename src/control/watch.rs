//! Following edits to a graph file, by looking at its metadata from `Engine::update`.
//!
//! Editors often save by writing a new file and renaming it over the old one, which replaces the inode that
//! a kernel file watch would follow; comparing the path's metadata (modification and change times with
//! nanoseconds, length, device and inode) sees an edit in place and a rename over alike, works on every
//! platform and file system (network ones included), and needs no thread and no dependency. The file is
//! looked at no more often than every [`POLL`], so an application that calls `update` in a tight loop
//! pays one `stat` per 20 ms.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The shortest time between two looks at the file.
const POLL: Duration = Duration::from_millis(20);

/// What tells one version of the file from another (`None`: the file is missing or unreadable).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    changed: (i64, i64),
    #[cfg(unix)]
    file: (u64, u64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt as _;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        #[cfg(unix)]
        changed: (m.ctime(), m.ctime_nsec()),
        #[cfg(unix)]
        file: (m.dev(), m.ino()),
    })
}

/// Follows a graph file and the files its nodes read (impulse responses, EQ profiles).
pub(crate) struct Watcher {
    path: PathBuf,
    /// Every file followed, the graph's first, with its stamp when last looked at.
    files: Vec<(PathBuf, Option<Stamp>)>,
    looked: Instant,
}

impl Watcher {
    /// Follows `path`, as it is now.
    ///
    /// # Errors
    /// If the file's folder cannot be read.
    pub fn new(path: &Path) -> std::io::Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::read_dir(dir)?;
        Ok(Self { path: path.to_path_buf(), files: vec![(path.to_path_buf(), stamp(path))], looked: Instant::now() })
    }

    /// Also follows `files` (in place of the ones given before): a file followed already keeps its stamp, so
    /// a change made while the graph was being reloaded is still seen.
    pub fn follow(&mut self, files: Vec<PathBuf>) {
        let mut kept = vec![self.files[0].clone()];
        for f in files {
            if kept.iter().any(|(k, _)| *k == f) {
                continue;
            }
            let last = self.files.iter().find(|(k, _)| *k == f).map_or_else(|| stamp(&f), |(_, s)| *s);
            kept.push((f, last));
        }
        self.files = kept;
    }

    /// The graph file, once, if it or a file followed with it changed (or went missing, or came back) since
    /// the last call that returned it.
    pub fn changes(&mut self) -> Option<PathBuf> {
        if self.looked.elapsed() < POLL {
            return None;
        }
        self.looked = Instant::now();
        let mut changed = false;
        for (path, last) in &mut self.files {
            let now = stamp(path);
            if now != *last {
                *last = now;
                changed = true;
            }
        }
        changed.then(|| self.path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(w: &mut Watcher) -> Option<PathBuf> {
        std::thread::sleep(POLL + Duration::from_millis(5));
        w.changes()
    }

    #[test]
    fn edits_in_place_renames_over_removals_and_returns_are_each_seen_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("g.ron");
        std::fs::write(&file, "a").expect("write");
        let mut w = Watcher::new(&file).expect("watch");
        assert_eq!(settle(&mut w), None, "nothing changed yet");
        std::fs::write(&file, "bb").expect("write");
        assert_eq!(settle(&mut w), Some(file.clone()), "an edit in place");
        assert_eq!(settle(&mut w), None, "reported once");
        // The same length, written again: the times tell it.
        std::fs::write(&file, "cc").expect("write");
        assert_eq!(settle(&mut w), Some(file.clone()), "an edit of the same length");
        let new = dir.path().join("g.ron.tmp");
        std::fs::write(&new, "cc").expect("write");
        std::fs::rename(&new, &file).expect("rename");
        assert_eq!(settle(&mut w), Some(file.clone()), "a rename over the file");
        std::fs::remove_file(&file).expect("remove");
        assert_eq!(settle(&mut w), Some(file.clone()), "a removal");
        assert_eq!(settle(&mut w), None);
        std::fs::write(&file, "d").expect("write");
        assert_eq!(settle(&mut w), Some(file.clone()), "the file back");
        assert!(Watcher::new(&dir.path().join("no/such/folder/g.ron")).is_err());
    }
}
