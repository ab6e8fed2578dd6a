//! What store-and-forward sync keeps beside the logs (migration 0003): witnesses'
//! cosignatures on checkpoints, the hub's refusals and alarms, signed revocation lists and
//! published policy bundles. This crate stores them; what they mean and how they are
//! checked is the sync crates' business.

use sqlx::Row as _;
use time::OffsetDateTime;

use crate::leaf::{from_unix_micros, unix_micros};
use crate::{AttestationLog, LogError};

/// A witness's cosignature line on one of this log's kept checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCosignature {
    /// The size of the checkpoint it signs.
    pub size: u64,
    /// The witness's key name (`garrison.<td>/hub`).
    pub witness: String,
    /// The signed-note signature line, as the witness wrote it.
    pub line: String,
    /// When it was stored.
    pub cosigned: OffsetDateTime,
}

/// One refusal or alarm at the hub, to be counted under (origin, kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEvent {
    pub origin: String,
    /// A stable code: `fork`, `bad-proof`, `bad-signature`, `tampered-record`, ...
    pub kind: String,
    pub time: OffsetDateTime,
    /// What happened (cut to [`SYNC_EVENT_DETAIL_MAX`] characters).
    pub detail: String,
    /// For a fork: the checkpoint the hub held and the one that contradicts it. Only the
    /// first pair of each (origin, kind) is kept.
    pub notes: Option<(String, String)>,
}

/// The stored summary of every [`SyncEvent`] of one (origin, kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEventSummary {
    pub origin: String,
    pub kind: String,
    pub count: u64,
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
    /// The last one's detail.
    pub detail: String,
    pub notes: Option<(String, String)>,
}

/// The most characters of a [`SyncEvent`]'s detail that are kept.
pub const SYNC_EVENT_DETAIL_MAX: usize = 500;

/// The most bytes of a note kept with a fork alarm.
const ALARM_NOTE_MAX: usize = 16 * 1024;

fn query(source: sqlx::Error) -> LogError {
    LogError::Query { source }
}

fn to_db(n: u64, what: &'static str) -> Result<i64, LogError> {
    i64::try_from(n).map_err(|_| LogError::InvalidEntry {
        field: what,
        problem: "out of range",
    })
}

fn from_db(n: i64, column: &'static str) -> Result<u64, LogError> {
    u64::try_from(n).map_err(|_| LogError::Corrupt {
        column,
        found: n.to_string(),
    })
}

impl AttestationLog {
    /// Keeps a witness's cosignature of this log's checkpoint of `size` (which must be kept:
    /// [`AttestationLog::store_checkpoint`]). Returns whether it was new; a second one by
    /// the same witness for the same size is ignored.
    pub async fn store_cosignature(
        &self,
        cosignature: &StoredCosignature,
    ) -> Result<bool, LogError> {
        if self.checkpoint_at(cosignature.size).await?.is_none() {
            return Err(LogError::CosignatureWithoutCheckpoint {
                size: cosignature.size,
            });
        }
        let done = sqlx::query(
            "INSERT INTO cosignatures (log_id, size, witness, line, cosigned_us) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (log_id, size, witness) DO NOTHING",
        )
        .bind(self.log_id())
        .bind(to_db(cosignature.size, "size")?)
        .bind(cosignature.witness.clone())
        .bind(cosignature.line.clone())
        .bind(unix_micros(cosignature.cosigned, "cosigned")?)
        .execute(self.pool())
        .await
        .map_err(query)?;
        Ok(done.rows_affected() == 1)
    }

    /// Every cosignature kept for this log, by size.
    pub async fn cosignatures(&self) -> Result<Vec<StoredCosignature>, LogError> {
        let rows = sqlx::query(
            "SELECT size, witness, line, cosigned_us FROM cosignatures WHERE log_id = $1 ORDER BY size, witness",
        )
        .bind(self.log_id())
        .fetch_all(self.pool())
        .await
        .map_err(query)?;
        rows.iter().map(stored_cosignature).collect()
    }

    /// The cosignatures kept of this log's checkpoints of sizes `first..=last`, by size.
    pub async fn cosignatures_between(
        &self,
        first: u64,
        last: u64,
    ) -> Result<Vec<StoredCosignature>, LogError> {
        let rows = sqlx::query(
            "SELECT size, witness, line, cosigned_us FROM cosignatures WHERE log_id = $1 \
             AND size >= $2 AND size <= $3 ORDER BY size, witness",
        )
        .bind(self.log_id())
        .bind(to_db(first, "size")?)
        .bind(to_db(last, "size")?)
        .fetch_all(self.pool())
        .await
        .map_err(query)?;
        rows.iter().map(stored_cosignature).collect()
    }

    /// Up to `limit` cosignatures kept for this log with no checkpoint of their size beside
    /// them, by size. The schema lets none be stored that way, so any found was left behind
    /// by someone who deleted or moved a checkpoint: the Audit service serves them, so that
    /// an auditor reading through it sees what `verify` on the database sees.
    pub async fn unattached_cosignatures(
        &self,
        limit: u32,
    ) -> Result<Vec<StoredCosignature>, LogError> {
        let rows = sqlx::query(
            "SELECT c.size, c.witness, c.line, c.cosigned_us FROM cosignatures AS c \
             WHERE c.log_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM checkpoints AS k WHERE k.log_id = c.log_id AND k.size = c.size) \
             ORDER BY c.size, c.witness LIMIT $2",
        )
        .bind(self.log_id())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(query)?;
        rows.iter().map(stored_cosignature).collect()
    }

    /// `witness`'s cosignature of the checkpoint of `size`, if kept.
    pub async fn cosignature_at(
        &self,
        size: u64,
        witness: &str,
    ) -> Result<Option<StoredCosignature>, LogError> {
        let row = sqlx::query(
            "SELECT size, witness, line, cosigned_us FROM cosignatures WHERE log_id = $1 AND size = $2 \
             AND witness = $3",
        )
        .bind(self.log_id())
        .bind(to_db(size, "size")?)
        .bind(witness.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(query)?;
        row.as_ref().map(stored_cosignature).transpose()
    }

    /// The cosignature of the largest checkpoint `witness` cosigned, if any.
    pub async fn latest_cosignature(
        &self,
        witness: &str,
    ) -> Result<Option<StoredCosignature>, LogError> {
        let row = sqlx::query(
            "SELECT size, witness, line, cosigned_us FROM cosignatures WHERE log_id = $1 AND witness = $2 \
             ORDER BY size DESC LIMIT 1",
        )
        .bind(self.log_id())
        .bind(witness.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(query)?;
        row.as_ref().map(stored_cosignature).transpose()
    }

    /// Keeps the certificate chain (PEM, the witness key's certificate first) of a hub
    /// witness key whose cosignatures this database keeps. Returns whether it was new.
    pub async fn add_witness_certificate(
        &self,
        chain_pem: &str,
        added: OffsetDateTime,
    ) -> Result<bool, LogError> {
        let done = sqlx::query(
            "INSERT INTO witness_certificates (digest, chain_pem, added_us) VALUES ($1, $2, $3) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(crate::evidence_digest(chain_pem.as_bytes()))
        .bind(chain_pem.to_owned())
        .bind(unix_micros(added, "added")?)
        .execute(self.pool())
        .await
        .map_err(query)?;
        Ok(done.rows_affected() == 1)
    }

    /// Every witness certificate chain kept (PEM), oldest first.
    pub async fn witness_certificates(&self) -> Result<Vec<String>, LogError> {
        let rows =
            sqlx::query("SELECT chain_pem FROM witness_certificates ORDER BY added_us, digest")
                .fetch_all(self.pool())
                .await
                .map_err(query)?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(query)
    }

    /// Counts a refusal or alarm under its (origin, kind): one row each, however many come.
    pub async fn record_sync_event(&self, event: &SyncEvent) -> Result<(), LogError> {
        let cut = |text: &str, max: usize| text.chars().take(max).collect::<String>();
        let (held, other) = match &event.notes {
            Some((held, other)) => (
                Some(cut(held, ALARM_NOTE_MAX)),
                Some(cut(other, ALARM_NOTE_MAX)),
            ),
            None => (None, None),
        };
        let time = unix_micros(event.time, "time")?;
        sqlx::query(
            "INSERT INTO sync_events (origin, kind, count, first_us, last_us, detail, held_note, other_note) \
             VALUES ($1, $2, 1, $3, $3, $4, $5, $6) \
             ON CONFLICT (origin, kind) DO UPDATE SET count = sync_events.count + 1, \
             last_us = excluded.last_us, detail = excluded.detail, \
             held_note = COALESCE(sync_events.held_note, excluded.held_note), \
             other_note = COALESCE(sync_events.other_note, excluded.other_note)",
        )
        .bind(cut(&event.origin, 255))
        .bind(cut(&event.kind, 64))
        .bind(time)
        .bind(cut(&event.detail, SYNC_EVENT_DETAIL_MAX))
        .bind(held)
        .bind(other)
        .execute(self.pool())
        .await
        .map_err(query)?;
        Ok(())
    }

    /// Every (origin, kind) of refusal or alarm recorded in this database.
    pub async fn sync_events(&self) -> Result<Vec<SyncEventSummary>, LogError> {
        let rows = sqlx::query(
            "SELECT origin, kind, count, first_us, last_us, detail, held_note, other_note \
             FROM sync_events ORDER BY origin, kind",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query)?;
        rows.iter().map(sync_event_summary).collect()
    }

    /// Keeps a signed revocation list under its sequence. Returns whether it was new.
    pub async fn store_revocation_list(
        &self,
        sequence: u64,
        note: &str,
        stored: OffsetDateTime,
    ) -> Result<bool, LogError> {
        let done = sqlx::query(
            "INSERT INTO revocation_lists (sequence, note, stored_us) VALUES ($1, $2, $3) \
             ON CONFLICT (sequence) DO NOTHING",
        )
        .bind(to_db(sequence, "sequence")?)
        .bind(note.to_owned())
        .bind(unix_micros(stored, "stored")?)
        .execute(self.pool())
        .await
        .map_err(query)?;
        Ok(done.rows_affected() == 1)
    }

    /// The revocation lists kept, highest sequence first, at most `limit`: (sequence, signed
    /// note).
    pub async fn newest_revocation_lists(
        &self,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, LogError> {
        let rows = sqlx::query(
            "SELECT sequence, note FROM revocation_lists ORDER BY sequence DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(query)?;
        rows.iter()
            .map(|row| {
                let sequence: i64 = row.try_get(0).map_err(query)?;
                let note: String = row.try_get(1).map_err(query)?;
                Ok((from_db(sequence, "revocation_lists.sequence")?, note))
            })
            .collect()
    }

    /// The revocation list of the highest sequence kept: (sequence, signed note).
    pub async fn latest_revocation_list(&self) -> Result<Option<(u64, String)>, LogError> {
        let row = sqlx::query(
            "SELECT sequence, note FROM revocation_lists ORDER BY sequence DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(query)?;
        row.map(|row| {
            let sequence: i64 = row.try_get(0).map_err(query)?;
            let note: String = row.try_get(1).map_err(query)?;
            Ok((from_db(sequence, "revocation_lists.sequence")?, note))
        })
        .transpose()
    }

    /// Keeps a published policy bundle under its sequence. Returns whether it was new; a
    /// different bundle under a sequence already kept is refused.
    pub async fn store_policy_bundle(
        &self,
        sequence: u64,
        digest: &str,
        bundle: &[u8],
        stored: OffsetDateTime,
    ) -> Result<bool, LogError> {
        let done = sqlx::query(
            "INSERT INTO policy_bundles (sequence, digest, bundle, stored_us) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sequence) DO NOTHING",
        )
        .bind(to_db(sequence, "sequence")?)
        .bind(digest.to_owned())
        .bind(bundle.to_vec())
        .bind(unix_micros(stored, "stored")?)
        .execute(self.pool())
        .await
        .map_err(query)?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        match self.latest_policy_bundle_where(Some(sequence)).await? {
            Some((_, held, _)) if held == digest => Ok(false),
            _ => Err(LogError::InvalidEntry {
                field: "sequence",
                problem: "another policy bundle was already published under this sequence",
            }),
        }
    }

    /// The published policy bundle of the highest sequence: (sequence, digest, bytes).
    pub async fn latest_policy_bundle(&self) -> Result<Option<(u64, String, Vec<u8>)>, LogError> {
        self.latest_policy_bundle_where(None).await
    }

    async fn latest_policy_bundle_where(
        &self,
        sequence: Option<u64>,
    ) -> Result<Option<(u64, String, Vec<u8>)>, LogError> {
        let filter = if sequence.is_some() {
            " WHERE sequence = $1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT sequence, digest, bundle FROM policy_bundles{filter} ORDER BY sequence DESC LIMIT 1"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(sequence) = sequence {
            q = q.bind(to_db(sequence, "sequence")?);
        }
        let row = q.fetch_optional(self.pool()).await.map_err(query)?;
        row.map(|row| {
            let sequence: i64 = row.try_get(0).map_err(query)?;
            let digest: String = row.try_get(1).map_err(query)?;
            let bundle: Vec<u8> = row.try_get(2).map_err(query)?;
            Ok((
                from_db(sequence, "policy_bundles.sequence")?,
                digest,
                bundle,
            ))
        })
        .transpose()
    }
}

fn stored_cosignature(row: &sqlx::any::AnyRow) -> Result<StoredCosignature, LogError> {
    let size: i64 = row.try_get(0).map_err(query)?;
    let cosigned: i64 = row.try_get(3).map_err(query)?;
    Ok(StoredCosignature {
        size: from_db(size, "cosignatures.size")?,
        witness: row.try_get(1).map_err(query)?,
        line: row.try_get(2).map_err(query)?,
        cosigned: from_unix_micros(cosigned, "cosignatures.cosigned_us")?,
    })
}

fn sync_event_summary(row: &sqlx::any::AnyRow) -> Result<SyncEventSummary, LogError> {
    let count: i64 = row.try_get(2).map_err(query)?;
    let first: i64 = row.try_get(3).map_err(query)?;
    let last: i64 = row.try_get(4).map_err(query)?;
    let held: Option<String> = row.try_get(6).map_err(query)?;
    let other: Option<String> = row.try_get(7).map_err(query)?;
    Ok(SyncEventSummary {
        origin: row.try_get(0).map_err(query)?,
        kind: row.try_get(1).map_err(query)?,
        count: from_db(count, "sync_events.count")?,
        first: from_unix_micros(first, "sync_events.first_us")?,
        last: from_unix_micros(last, "sync_events.last_us")?,
        detail: row.try_get(5).map_err(query)?,
        notes: held.zip(other),
    })
}
