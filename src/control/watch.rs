//! Following edits to a graph file with `notify`.
//!
//! Editors often save by writing a new file and renaming it over the old one, which replaces the inode a
//! file watch would follow; so the file's folder is watched and events are filtered by name.

use notify::{RecursiveMode, Watcher as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

pub(crate) struct Watcher {
    _watcher: notify::RecommendedWatcher,
    rx: mpsc::Receiver<()>,
    path: PathBuf,
}

impl Watcher {
    pub fn new(path: &Path) -> notify::Result<Self> {
        let path = path.to_path_buf();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_os_string());
        let (tx, rx) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            if event.paths.iter().any(|p| p.file_name().map(|n| n.to_os_string()) == name) {
                let _ = tx.send(());
            }
        })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(Self { _watcher: watcher, rx, path })
    }

    /// The file, once, if it changed since the last call.
    pub fn changes(&mut self) -> Option<PathBuf> {
        let mut changed = false;
        while self.rx.try_recv().is_ok() {
            changed = true;
        }
        changed.then(|| self.path.clone())
    }
}
