//! The service's own bounds on a request head, well below hyper's (100 fields, and the
//! connection's 16 KiB buffer for the whole head): a head between the two is answered with a
//! problem document (`HttpError`) rather than hyper's empty 431. Together (the method, the
//! target, the fields and their line ends) they stay under those 16 KiB, so every head over
//! one of them gets the problem document.

pub const MAX_REQUEST_HEADERS: usize = 64;
/// The header fields, names and values with 4 bytes of separators each.
pub const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;
/// The request target (path and query); longer is a 414 (RFC 9110, section 15.5.15).
pub const MAX_REQUEST_TARGET_BYTES: usize = 6 * 1024;
/// The method token; no method of this service is longer than 7 bytes, and a longer one is
/// neither echoed in a 405 nor logged as it is.
pub const MAX_METHOD_BYTES: usize = 32;
