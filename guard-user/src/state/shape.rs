//! Each rule's attack-shape state (`crate::shape`), by rule name, so a restart keeps the
//! baseline instead of warming up again.

use redb::{ReadableDatabase, TableDefinition};

use super::{StateDb, StateError};

/// Rule name -> the shape's bytes (`crate::shape::Shapes::close`).
const SHAPE: TableDefinition<&str, &[u8]> = TableDefinition::new("shape.v1");

impl StateDb {
    /// Writes `rows` in one transaction (durable when this returns).
    pub fn save_shape(&self, rows: &[(String, Vec<u8>)]) -> Result<(), StateError> {
        let tx = self.db.begin_write().map_err(|e| self.err()(e.into()))?;
        {
            let mut t = tx.open_table(SHAPE).map_err(|e| self.err()(e.into()))?;
            for (name, bytes) in rows {
                t.insert(name.as_str(), bytes.as_slice())
                    .map_err(|e| self.err()(e.into()))?;
            }
        }
        tx.commit().map_err(|e| self.err()(e.into()))
    }

    /// Every rule's shape row (none before the first window closed).
    pub fn shape_rows(&self) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let tx = self.db.begin_read().map_err(|e| self.err()(e.into()))?;
        let table = match tx.open_table(SHAPE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err()(e.into())),
        };
        let mut rows = Vec::new();
        for row in redb::ReadableTable::iter(&table).map_err(|e| self.err()(e.into()))? {
            let (k, v) = row.map_err(|e| self.err()(e.into()))?;
            rows.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(rows)
    }
}
