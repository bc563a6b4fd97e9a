//! The process exit codes of `faultline`, part of the CLI contract (see README.md).

/// Every assertion held (or, for `validate`/`plan`, the input was valid).
pub const OK: i32 = 0;
/// At least one assertion failed: the system under test did not behave as documented.
pub const ASSERTION_FAILED: i32 = 1;
/// The experiment file or the command-line arguments are invalid.
pub const INVALID_INPUT: i32 = 2;
/// The lab could not be built or a component failed: no verdict about the system was reached.
pub const INFRASTRUCTURE: i32 = 3;
