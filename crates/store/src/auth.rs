//! The privacy layer's records: accounts, grants and keys as JSON documents by kind and
//! id, and keys that may be used only once (client assertion ids) until they expire.
//!
//! The store does not know what the documents mean; `privacy` does. These tables are
//! not FHIR resources and no FHIR interaction reaches them.

/// What kind of record a document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// An OAuth client.
    Client,
    /// A local user account.
    User,
    /// A key pair the server signs its tokens with.
    SigningKey,
    /// A break-the-glass grant: a principal's access to one patient's restricted data,
    /// until it expires.
    BreakGlass,
}

impl AuthKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthKind::Client => "client",
            AuthKind::User => "user",
            AuthKind::SigningKey => "signing_key",
            AuthKind::BreakGlass => "break_glass",
        }
    }
}

/// The statement that counts a failed login (see `Store::login_failed`), with the
/// placeholders `arg(n)` makes: 1 the name, 2 now, 3 the failures that lock, 4 the
/// lockout, in seconds. A pause as long as the lockout, or a lock that ended, starts
/// the count again; it returns the row's `locked_until`.
pub(crate) fn login_failed_sql(arg: &dyn Fn(usize) -> String) -> String {
    let (name, now, max, lockout) = (arg(1), arg(2), arg(3), arg(4));
    let count = format!(
        "CASE WHEN (t.locked_until IS NOT NULL AND t.locked_until <= {now}) \
         OR {now} - t.last >= {lockout} THEN 1 ELSE t.failures + 1 END"
    );
    format!(
        "INSERT INTO login_failure AS t (name, failures, last, locked_until)
         VALUES ({name}, 1, {now}, CASE WHEN {max} <= 1 THEN {now} + {lockout} END)
         ON CONFLICT (name) DO UPDATE SET
             failures = {count},
             last = {now},
             locked_until = CASE WHEN {count} >= {max} THEN {now} + {lockout} END
         RETURNING locked_until"
    )
}
