//! Which files changed: their folders are watched (inotify through
//! `notify`), and a change counts once their content differs.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use notify::Watcher;

/// Events closer together than this are one change (a certificate and its
/// key written one after the other).
pub(super) const SETTLE: Duration = Duration::from_millis(300);

/// Whether a change to `paths` may concern `files`: one of them, or the
/// `..data` link swap of a Kubernetes volume in one of their directories.
pub(super) fn concerns(paths: &[PathBuf], files: &[PathBuf]) -> bool {
    paths.iter().any(|p| {
        files.contains(p)
            || (p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".."))
                && files.iter().any(|f| f.parent() == p.parent()))
    })
}

/// Each file's SHA-256 (`None`: unreadable), read off the runtime.
pub(super) async fn fingerprint(files: Vec<PathBuf>) -> Vec<Option<Vec<u8>>> {
    let read = move || {
        files
            .iter()
            .map(|f| {
                let bytes = std::fs::read(f).ok()?;
                Some(
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes)
                        .as_ref()
                        .to_vec(),
                )
            })
            .collect()
    };
    tokio::task::spawn_blocking(read).await.unwrap_or_default()
}

/// Watches directories and sends the paths of each change.
pub(super) struct DirWatch {
    watcher: Option<notify::RecommendedWatcher>,
    dirs: HashSet<PathBuf>,
}

impl DirWatch {
    pub(super) fn new(tx: tokio::sync::mpsc::UnboundedSender<Vec<PathBuf>>) -> DirWatch {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                let _ = tx.send(event.paths);
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config's files; reload with SIGHUP");
                None
            }
        };
        DirWatch {
            watcher,
            dirs: HashSet::new(),
        }
    }

    /// Adds the directories of `files` not watched yet.
    pub(super) fn watch(&mut self, files: &[PathBuf]) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        for dir in files.iter().filter_map(|f| f.parent()) {
            if self.dirs.contains(dir) {
                continue;
            }
            match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(dir.to_owned());
                }
                Err(e) => tracing::warn!(
                    dir = %dir.display(),
                    error = %e,
                    "cannot watch a config directory; reload with SIGHUP"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubernetes_volume_swap_concerns_the_files_in_that_directory() {
        let files = [
            PathBuf::from("/etc/sg/tls.crt"),
            PathBuf::from("/c/sg.yaml"),
        ];
        let is = |p: &str| concerns(&[PathBuf::from(p)], &files);
        assert!(is("/etc/sg/tls.crt"));
        assert!(is("/etc/sg/..data"));
        assert!(is("/c/sg.yaml"));
        assert!(!is("/c/sessiongate.db-wal"), "the store next to the config");
        assert!(!is("/other/..data"));
    }
}
