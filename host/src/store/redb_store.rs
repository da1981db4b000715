//! The embedded backend: one redb file, one redb table per [`Table`], `Durability::Immediate`
//! (fsync before `commit` returns).

use std::path::Path;

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::{Batch, Op, Store, StoreError, Table};

fn def(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A redb database file.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Opens or creates the database at `path` and makes sure every table exists.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
            other => backend(other),
        })?;
        let tx = db.begin_write().map_err(backend)?;
        for table in Table::ALL {
            tx.open_table(def(table)).map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(Self { db })
    }
}

impl Store for RedbStore {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let t = match tx.open_table(def(table)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        Ok(t.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
    }

    fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let t = tx.open_table(def(table)).map_err(backend)?;
        let mut out = Vec::new();
        for entry in t.range(prefix..).map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn snapshot(&self) -> Result<Vec<(Table, String, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let mut out = Vec::new();
        for table in Table::ALL {
            let t = tx.open_table(def(table)).map_err(backend)?;
            for entry in t.iter().map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                out.push((table, k.value().to_owned(), v.value().to_vec()));
            }
        }
        Ok(out)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(backend)?;
        for super::Expect(table, key, want) in &batch.expects {
            let t = tx.open_table(def(*table)).map_err(backend)?;
            let have = t
                .get(key.as_str())
                .map_err(backend)?
                .map(|v| v.value().to_vec());
            if have != *want {
                // Dropping the transaction aborts it.
                return Err(StoreError::Conflict);
            }
        }
        for op in &batch.ops {
            match op {
                Op::Put(table, key, value) => {
                    let mut t = tx.open_table(def(*table)).map_err(backend)?;
                    t.insert(key.as_str(), value.as_slice()).map_err(backend)?;
                }
                Op::Delete(table, key) => {
                    let mut t = tx.open_table(def(*table)).map_err(backend)?;
                    t.remove(key.as_str()).map_err(backend)?;
                }
            }
        }
        tx.commit().map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_conditional_and_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arca.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            s.commit(Batch::new().expect(Table::Keys, "a/1", None).put(
                Table::Keys,
                "a/1",
                b"x".to_vec(),
            ))
            .unwrap();
            // The same precondition now fails and writes nothing.
            let again = Batch::new().expect(Table::Keys, "a/1", None).put(
                Table::Keys,
                "a/2",
                b"y".to_vec(),
            );
            assert!(matches!(s.commit(again), Err(StoreError::Conflict)));
            s.commit(Batch::new().put(Table::Keys, "b/1", b"z".to_vec()))
                .unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.get(Table::Keys, "a/1").unwrap(), Some(b"x".to_vec()));
        assert_eq!(s.get(Table::Keys, "a/2").unwrap(), None);
        let a = s.scan(Table::Keys, "a/").unwrap();
        assert_eq!(a.len(), 1);
        s.commit(Batch::new().delete(Table::Keys, "a/1")).unwrap();
        assert!(s.scan(Table::Keys, "a/").unwrap().is_empty());
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_is_alive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arca.redb");
        let _first = RedbStore::open(&path).unwrap();
        assert!(matches!(RedbStore::open(&path), Err(StoreError::Locked)));
    }
}
