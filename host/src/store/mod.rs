//! Durable state behind a narrow, backend-neutral trait.
//!
//! The trait is a sorted key-value map per [`Table`] with atomic, conditional batches: exactly
//! what redb (embedded, the default) and a distributed store such as etcd (transactions with
//! compare-and-swap) both offer. Records are opaque bytes here; the `kms` layer owns their format
//! and seals secret fields before they arrive. Only this module names `redb`.

mod redb_store;

pub use redb_store::RedbStore;

use std::fmt;

/// The logical tables. Keys are UTF-8 strings, ordered bytewise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Store-wide facts: schema version, root-key check value.
    Meta,
    /// `account id` → account record.
    Accounts,
    /// `AccessKey id` → AccessKey record (secret sealed).
    AccessKeys,
    /// `account/key id` → key metadata.
    Keys,
    /// `key version id` → version record (material sealed).
    KeyVersions,
    /// `account/alias name` → alias record.
    Aliases,
    /// `sha256(import token)` → BYOK import parameters (wrapping key sealed).
    ImportTokens,
    /// `account/secret name` → secret metadata (stages, rotation state).
    Secrets,
    /// `secret id/version id` → one secret version (value envelope-encrypted).
    SecretVersions,
    /// `instance id` → KMS instance (tenancy unit with its own quota and endpoint).
    Instances,
    /// `account/name` → AAP network rule.
    NetworkRules,
    /// `account/name` → AAP permission policy.
    AccessPolicies,
    /// `account/name` → application access point.
    AccessPoints,
    /// `client key id` → client key (certificate; the private key is never kept).
    ClientKeys,
}

impl Table {
    /// Every table, for creating them up front and for snapshots.
    pub const ALL: [Table; 14] = [
        Table::Meta,
        Table::Accounts,
        Table::AccessKeys,
        Table::Keys,
        Table::KeyVersions,
        Table::Aliases,
        Table::ImportTokens,
        Table::Secrets,
        Table::SecretVersions,
        Table::Instances,
        Table::NetworkRules,
        Table::AccessPolicies,
        Table::AccessPoints,
        Table::ClientKeys,
    ];

    /// The table's stable name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Accounts => "accounts",
            Table::AccessKeys => "access_keys",
            Table::Keys => "keys",
            Table::KeyVersions => "key_versions",
            Table::Aliases => "aliases",
            Table::ImportTokens => "import_tokens",
            Table::Secrets => "secrets",
            Table::SecretVersions => "secret_versions",
            Table::Instances => "instances",
            Table::NetworkRules => "network_rules",
            Table::AccessPolicies => "access_policies",
            Table::AccessPoints => "access_points",
            Table::ClientKeys => "client_keys",
        }
    }
}

/// One write in a [`Batch`].
#[derive(Clone)]
pub(crate) enum Op {
    /// Insert or replace.
    Put(Table, String, Vec<u8>),
    /// Remove if present.
    Delete(Table, String),
}

/// A precondition of a [`Batch`]: the entry must currently hold exactly this value
/// (`None`: must be absent). This is compare-and-swap, so read-modify-write cycles cannot
/// lose a concurrent update.
#[derive(Clone)]
pub(crate) struct Expect(
    pub(crate) Table,
    pub(crate) String,
    pub(crate) Option<Vec<u8>>,
);

/// Writes that commit together or not at all, after all their preconditions hold.
#[derive(Clone, Default)]
pub struct Batch {
    pub(crate) expects: Vec<Expect>,
    pub(crate) ops: Vec<Op>,
}

impl fmt::Debug for Batch {
    // Values are records that may hold sealed material; print only their shape.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("expects", &self.expects.len())
            .field("ops", &self.ops.len())
            .finish()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a precondition.
    pub fn expect(mut self, table: Table, key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        self.expects.push(Expect(table, key.into(), value));
        self
    }

    /// Adds an insert-or-replace.
    pub fn put(mut self, table: Table, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put(table, key.into(), value));
        self
    }

    /// Adds a removal.
    pub fn delete(mut self, table: Table, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete(table, key.into()));
        self
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A precondition of the batch did not hold; nothing was written. Callers re-read and retry
    /// or report the conflict (e.g. "alias already exists").
    #[error("a precondition of the write did not hold")]
    Conflict,
    /// Another process holds the store open.
    #[error("the data directory is in use by another process")]
    Locked,
    /// The backend failed; the message is for the operator's log, never for API clients.
    #[error("storage backend: {0}")]
    Backend(String),
}

/// The storage contract. Implementations must make a batch durable before `commit` returns:
/// an acknowledged write survives a crash at any later instant.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// One entry.
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// All entries whose key starts with `prefix`, in key order.
    fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Checks the batch's preconditions and applies its writes atomically and durably.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;
    /// Every entry of every table as of one instant (one read transaction), for backups.
    fn snapshot(&self) -> Result<Vec<(Table, String, Vec<u8>)>, StoreError>;
}

impl Table {
    /// The table with this on-disk name.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}
