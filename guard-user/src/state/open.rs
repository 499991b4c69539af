//! Opening the database at start: read whole, set aside only when it is corrupt.

use std::path::Path;

use super::{
    Contents, FILE, Opened, StateDb, StateError,
    error::{owner_only, panic_text},
    open_file, unix_now_secs,
};

impl StateDb {
    /// Opens (or creates) `<dir>/guard.redb`, readable by its owner only. A file redb
    /// reports corrupt (or panics on) is renamed `guard.redb.broken-<unix time>` and a new
    /// one created; any other error (no permission, an I/O error, another guardd holding it)
    /// is returned with the file left as it was: a transient error must not cost the
    /// verdicts it holds.
    pub fn open(dir: &Path) -> Result<Opened, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE);
        let db_err = |path: &Path| {
            let path = path.to_path_buf();
            move |e: redb::DatabaseError| StateError::Db {
                path,
                source: e.into(),
            }
        };
        let read = || {
            open_file(&path).map_err(db_err(&path)).and_then(|db| {
                let s = StateDb {
                    db,
                    path: path.clone(),
                };
                s.migrate()?;
                let contents = s.load()?;
                let outbox = s.outbox()?;
                let superseded = s.superseded()?;
                Ok((s, contents, outbox, superseded))
            })
        };
        // redb checks some of what it reads with assertions (debug builds): a panic while
        // reading the file is corruption too.
        let opened =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
                Err(StateError::Record {
                    path: path.clone(),
                    reason: format!("reading it panicked: {}", panic_text(&panic)),
                })
            });
        match opened {
            Ok((db, contents, outbox, superseded)) => {
                owner_only(&path);
                Ok(Opened {
                    db,
                    contents,
                    outbox,
                    superseded,
                    set_aside: None,
                })
            }
            Err(e) if path.exists() && e.is_corruption() => {
                let aside = dir.join(format!("{FILE}.broken-{}", unix_now_secs()));
                std::fs::rename(&path, &aside).map_err(|source| StateError::Dir {
                    path: aside.clone(),
                    source,
                })?;
                let db = open_file(&path).map_err(db_err(&path))?;
                owner_only(&path);
                Ok(Opened {
                    db: StateDb { db, path },
                    contents: Contents::default(),
                    outbox: Vec::new(),
                    superseded: Default::default(),
                    set_aside: Some((aside, crate::error_chain(&e))),
                })
            }
            Err(e) => Err(e),
        }
    }
}
