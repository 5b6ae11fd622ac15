//! The bounds of an API request, in one leaf module: the handlers enforce them, and the
//! OpenAPI schema, the problem details and the configuration's checks quote them.

use std::time::Duration;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: u64 = 1024;

/// How long a request body may take to arrive after the headers.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Page size of a list without `limit`, and the largest a client may ask for.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Room reserved per item of a page while it is built: more than an item costs at its largest
/// (a 128-character name as SCAN returns it, as a key for MGET, as a value read back, as the
/// item shown, and as JSON, about 800 bytes in all).
const ITEM_BYTES: usize = 1024;

/// Room reserved per page beyond its items: the cursor and the JSON around the items.
const PAGE_BYTES: usize = 1024;

/// The room a page of `limit` items reserves while it is built (`ResponseBudget`); the
/// budget must hold that of the largest page.
pub const fn room_for(limit: usize) -> usize {
    limit * ITEM_BYTES + PAGE_BYTES
}
