//! Where the inputs live (the data dir, the config file, the checkout they
//! are in): which directories are watched for them, and which of them a
//! file event may have changed ([`Dirty`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{EventKind, RecursiveMode};

use super::{git, inputs};
use crate::data::source::SourceOptions;

/// Which inputs may have changed since they were last looked at.
#[derive(Default, Clone, Copy)]
pub(super) struct Dirty {
    pub data: bool,
    pub config: bool,
    pub git: bool,
}

impl Dirty {
    pub const ALL: Dirty = Dirty {
        data: true,
        config: true,
        git: true,
    };

    pub fn any(&self) -> bool {
        self.data || self.config || self.git
    }

    /// Adds what `other` marks.
    pub fn add(&mut self, other: Dirty) {
        self.data |= other.data;
        self.config |= other.config;
        self.git |= other.git;
    }
}

/// The inputs' places on disk (absolute paths).
pub(super) struct Watched {
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    /// The checkout the workspace lives in, when there is one.
    pub repo: Option<git::Repo>,
    /// How the data dir is read (it decides whether image folders are watched).
    pub source: SourceOptions,
}

impl Watched {
    /// Looks for the checkout again (it may appear later: a clone); true when it changed.
    pub fn refresh_repo(&mut self) -> bool {
        let found = git::discover(&self.data_dir).or_else(|| {
            self.config
                .as_deref()
                .and_then(Path::parent)
                .and_then(git::discover)
        });
        let changed = found != self.repo;
        self.repo = found;
        changed
    }

    /// Which inputs an event may have changed.
    pub fn dirtied_by(&self, event: &notify::Event) -> Dirty {
        if event.need_rescan() {
            return Dirty::ALL;
        }
        let mut d = Dirty::default();
        if !can_change_content(&event.kind) {
            return d;
        }
        for path in &event.paths {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // `..data` & co: the symlink swap of a Kubernetes ConfigMap/Secret volume.
            let swap = name.starts_with("..");
            d.data |= path == &self.data_dir
                || (path.parent() == Some(&self.data_dir) && (inputs::is_data_file(name) || swap))
                || self.image_dirs().iter().any(|d| path.starts_with(d));
            d.config |= self.config.as_ref().is_some_and(|c| {
                c.parent() == path.parent() && (c.file_name() == path.file_name() || swap)
            });
            d.git |= self
                .repo
                .as_ref()
                .is_some_and(|r| path.starts_with(&r.git_dir) || path.starts_with(&r.common_dir));
        }
        d
    }

    /// `train/` and `test/` of an image-folder data dir (none for IDX).
    fn image_dirs(&self) -> Vec<PathBuf> {
        if inputs::is_folders(&self.data_dir, &self.source) {
            vec![self.data_dir.join("train"), self.data_dir.join("test")]
        } else {
            Vec::new()
        }
    }

    /// The directories that must be watched for the inputs.
    pub fn desired(&self) -> Vec<(PathBuf, RecursiveMode)> {
        let mut want: BTreeMap<PathBuf, RecursiveMode> = BTreeMap::new();
        let mut add = |p: &Path, m: RecursiveMode| {
            let e = want.entry(p.to_path_buf()).or_insert(m);
            if m == RecursiveMode::Recursive {
                *e = m;
            }
        };
        add(&self.data_dir, RecursiveMode::NonRecursive);
        for d in self.image_dirs().into_iter().filter(|d| d.is_dir()) {
            add(&d, RecursiveMode::Recursive);
        }
        // The parent sees the data dir itself being replaced or created.
        if let Some(p) = self.data_dir.parent() {
            add(p, RecursiveMode::NonRecursive);
        }
        // The config's directory, not the file: editors and ConfigMaps replace files.
        if let Some(p) = self.config.as_deref().and_then(Path::parent) {
            add(p, RecursiveMode::NonRecursive);
        }
        if let Some(repo) = &self.repo {
            for (dir, recursive) in repo.watch_dirs() {
                let mode = if recursive {
                    RecursiveMode::Recursive
                } else {
                    RecursiveMode::NonRecursive
                };
                add(&dir, mode);
            }
        }
        want.into_iter().collect()
    }
}

/// Whether an event of this kind can change what a file holds. Opening,
/// reading and closing a file unwritten (the watcher's own hashing makes
/// them) and access-time updates cannot: counting them made the watcher
/// re-hash the data set forever.
fn can_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};

    #[test]
    fn reading_a_file_is_no_change_and_writing_one_is() {
        for quiet in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
            EventKind::Other,
        ] {
            assert!(!can_change_content(&quiet), "{quiet:?}");
        }
        for change in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(can_change_content(&change), "{change:?}");
        }
    }

    #[test]
    fn an_event_marks_the_input_its_path_belongs_to() {
        let w = Watched {
            data_dir: "/w/data".into(),
            config: Some("/w/cfg/trainerd.toml".into()),
            repo: None,
            source: SourceOptions::default(),
        };
        let marks = |kind: EventKind, path: &str| {
            let d = w.dirtied_by(&notify::Event::new(kind).add_path(path.into()));
            (d.data, d.config, d.git)
        };
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(
            marks(write, "/w/data/train-images-idx3-ubyte.gz"),
            (true, false, false)
        );
        assert_eq!(marks(write, "/w/data/notes.txt"), (false, false, false));
        assert_eq!(
            marks(write, "/w/data/..2024_01_01"),
            (true, false, false),
            "a ConfigMap swap"
        );
        assert_eq!(marks(write, "/w/cfg/trainerd.toml"), (false, true, false));
        assert_eq!(marks(write, "/w/cfg/other.toml"), (false, false, false));
        let read = EventKind::Access(AccessKind::Read);
        assert_eq!(marks(read, "/w/cfg/trainerd.toml"), (false, false, false));
    }
}
