//! What one operation produced: the rich [`Outcome`] that code matches on, and the compact
//! [`OutcomeCode`] stored in every [`OpRecord`] (a run keeps millions of them).

use serde::{Deserialize, Serialize};

/// The result of one operation as the generator observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    Error(ErrorKind),
}

impl Outcome {
    pub fn is_ok(self) -> bool {
        matches!(self, Outcome::Ok)
    }
}

/// Why an operation failed. Deliberately coarse and closed: verdicts count these per window, and
/// the first full message per kind is kept separately (`WorkloadRecord::error_samples`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No answer within the plan's `op_timeout`; the request may still have been applied.
    Timeout,
    /// No connection could be made: refused, unreachable, or none up while reconnecting.
    Connect,
    /// The connection broke mid-operation (reset, closed before the answer).
    Io,
    /// HTTP answered with a status outside 2xx (redirects are not followed: they are answers).
    Status(u16),
    /// Redis answered with an error reply.
    Server(ServerError),
    /// An answer arrived but could not be understood.
    Protocol,
    /// Still waiting for an in-flight slot or an answer at the workload's hard deadline.
    Abandoned,
    /// Anything the client reported that fits none of the above.
    Other,
}

/// Redis error replies, by their code (the first word of the reply). The named ones are those a
/// fault can provoke and a verdict may ask about: a demoted primary answers READONLY, a replica
/// syncing answers LOADING / MASTERDOWN, a paused or scripted server BUSY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerError {
    Err,
    ReadOnly,
    Loading,
    MasterDown,
    Busy,
    Oom,
    NoAuth,
    NoPerm,
    WrongType,
    TryAgain,
    ClusterDown,
    Moved,
    Other,
}

/// Invariant: the index of a variant in this table is its code offset; append only, since codes
/// are stored in journals.
const SERVER_ERRORS: [(ServerError, &str); 13] = [
    (ServerError::Err, "ERR"),
    (ServerError::ReadOnly, "READONLY"),
    (ServerError::Loading, "LOADING"),
    (ServerError::MasterDown, "MASTERDOWN"),
    (ServerError::Busy, "BUSY"),
    (ServerError::Oom, "OOM"),
    (ServerError::NoAuth, "NOAUTH"),
    (ServerError::NoPerm, "NOPERM"),
    (ServerError::WrongType, "WRONGTYPE"),
    (ServerError::TryAgain, "TRYAGAIN"),
    (ServerError::ClusterDown, "CLUSTERDOWN"),
    (ServerError::Moved, "MOVED"),
    (ServerError::Other, "OTHER"),
];

impl ServerError {
    /// Maps a reply's code (`READONLY`, `LOADING`, ...) to a kind; unknown codes are `Other`.
    pub fn from_code(code: &str) -> ServerError {
        SERVER_ERRORS
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(code))
            .map_or(ServerError::Other, |(kind, _)| *kind)
    }

    pub fn code(self) -> &'static str {
        SERVER_ERRORS
            .iter()
            .find(|(kind, _)| *kind == self)
            .map_or("OTHER", |(_, name)| name)
    }

    fn index(self) -> u16 {
        SERVER_ERRORS
            .iter()
            .position(|(kind, _)| *kind == self)
            .unwrap_or(SERVER_ERRORS.len() - 1) as u16
    }
}

impl ErrorKind {
    /// A stable, human-readable name used as a map key in summaries: `timeout`, `status:503`,
    /// `server:READONLY` (an error reply: Redis codes, or `server:OTHER` for Kafka and Cassandra refusals), ...
    pub fn label(self) -> String {
        match self {
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::Connect => "connect".into(),
            ErrorKind::Io => "io".into(),
            ErrorKind::Status(status) => format!("status:{status}"),
            ErrorKind::Server(server) => format!("server:{}", server.code()),
            ErrorKind::Protocol => "protocol".into(),
            ErrorKind::Abandoned => "abandoned".into(),
            ErrorKind::Other => "other".into(),
        }
    }
}

/// [`Outcome`] packed into two bytes for [`OpRecord`].
///
/// Invariant (codes are stored in journals, never renumber): 0 ok; 1..=6 the plain error kinds;
/// 1000 + s an HTTP status s (s < 1000); 2000 + i the i-th Redis [`ServerError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutcomeCode(pub u16);

impl OutcomeCode {
    pub const OK: OutcomeCode = OutcomeCode(0);
    const TIMEOUT: u16 = 1;
    const CONNECT: u16 = 2;
    const IO: u16 = 3;
    const PROTOCOL: u16 = 4;
    const ABANDONED: u16 = 5;
    const OTHER: u16 = 6;
    const STATUS_BASE: u16 = 1000;
    const SERVER_BASE: u16 = 2000;

    pub fn is_ok(self) -> bool {
        self == OutcomeCode::OK
    }

    /// Decodes; a code this build does not know (a newer journal) reads as `Error(Other)`.
    pub fn outcome(self) -> Outcome {
        let kind = match self.0 {
            0 => return Outcome::Ok,
            Self::TIMEOUT => ErrorKind::Timeout,
            Self::CONNECT => ErrorKind::Connect,
            Self::IO => ErrorKind::Io,
            Self::PROTOCOL => ErrorKind::Protocol,
            Self::ABANDONED => ErrorKind::Abandoned,
            code @ Self::STATUS_BASE..Self::SERVER_BASE => {
                ErrorKind::Status(code - Self::STATUS_BASE)
            }
            code if code >= Self::SERVER_BASE => SERVER_ERRORS
                .get(usize::from(code - Self::SERVER_BASE))
                .map_or(ErrorKind::Other, |(server, _)| ErrorKind::Server(*server)),
            _ => ErrorKind::Other,
        };
        Outcome::Error(kind)
    }
}

impl From<Outcome> for OutcomeCode {
    fn from(outcome: Outcome) -> OutcomeCode {
        let code = match outcome {
            Outcome::Ok => 0,
            Outcome::Error(kind) => match kind {
                ErrorKind::Timeout => Self::TIMEOUT,
                ErrorKind::Connect => Self::CONNECT,
                ErrorKind::Io => Self::IO,
                ErrorKind::Protocol => Self::PROTOCOL,
                ErrorKind::Abandoned => Self::ABANDONED,
                ErrorKind::Other => Self::OTHER,
                // A status that does not fit the 1000-wide band cannot come from a real HTTP
                // stack (reqwest caps at 999); keep the error, lose the number.
                ErrorKind::Status(status) if status < 1000 => Self::STATUS_BASE + status,
                ErrorKind::Status(_) => Self::OTHER,
                ErrorKind::Server(server) => Self::SERVER_BASE + server.index(),
            },
        };
        OutcomeCode(code)
    }
}

/// One operation of a workload. Times are microseconds; 24 bytes with padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// Intended start, as an offset from the run's t0 (not the workload's start).
    pub intended_us: u64,
    /// Completion minus INTENDED start: queueing for an in-flight slot and the generator's own
    /// lag count, so a stalled system cannot hide the operations it delayed.
    pub latency_us: u64,
    pub outcome: OutcomeCode,
    /// Index into `WorkloadRecord::tags`; 0 means no tag.
    pub tag: u8,
    /// Completion minus the moment the op got its in-flight slot and was sent: what a
    /// closed-loop tool reports, NOT corrected for coordinated omission (time queued behind a
    /// stalled system is left out). For diagnosis and comparison with other tools only; verdicts
    /// use `latency_us`. 0 for an op that never got a slot (abandoned while queued); saturates at
    /// `u32::MAX` µs (71 minutes, beyond any op timeout). Fits in what was padding.
    #[serde(default)]
    pub service_us: u32,
}

// Every op of a run is kept in memory (see `MAX_OPS_PER_WORKLOAD`): keep the record this small.
const _: () = assert!(std::mem::size_of::<OpRecord>() == 24);

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_round_trip(outcome: Outcome, code: u16, label: &str) {
        let packed = OutcomeCode::from(outcome);
        assert_eq!(packed, OutcomeCode(code), "encoding {outcome:?}");
        assert_eq!(packed.outcome(), outcome, "decoding {code}");
        if let Outcome::Error(kind) = outcome {
            assert_eq!(kind.label(), label, "label of {outcome:?}");
        }
    }

    #[test]
    fn outcome_codes_round_trip() {
        use ErrorKind::*;
        let cases = [
            (Outcome::Ok, 0, ""),
            (Outcome::Error(Timeout), 1, "timeout"),
            (Outcome::Error(Connect), 2, "connect"),
            (Outcome::Error(Io), 3, "io"),
            (Outcome::Error(Protocol), 4, "protocol"),
            (Outcome::Error(Abandoned), 5, "abandoned"),
            (Outcome::Error(Other), 6, "other"),
            (Outcome::Error(Status(200)), 1200, "status:200"),
            (Outcome::Error(Status(503)), 1503, "status:503"),
            (Outcome::Error(Status(999)), 1999, "status:999"),
            (Outcome::Error(Server(ServerError::Err)), 2000, "server:ERR"),
            (
                Outcome::Error(Server(ServerError::ReadOnly)),
                2001,
                "server:READONLY",
            ),
            (
                Outcome::Error(Server(ServerError::Other)),
                2012,
                "server:OTHER",
            ),
        ];
        for (outcome, code, label) in cases {
            assert_round_trip(outcome, code, label);
        }
    }

    #[test]
    fn unknown_codes_decode_as_other_errors() {
        for code in [7, 999, 2013, u16::MAX] {
            assert_eq!(
                OutcomeCode(code).outcome(),
                Outcome::Error(ErrorKind::Other),
                "code {code}"
            );
        }
        assert_eq!(
            OutcomeCode::from(Outcome::Error(ErrorKind::Status(1000))),
            OutcomeCode(6)
        );
    }

    #[test]
    fn server_error_codes_map_case_insensitively() {
        let cases = [
            ("READONLY", ServerError::ReadOnly),
            ("loading", ServerError::Loading),
            ("MASTERDOWN", ServerError::MasterDown),
            ("ERR", ServerError::Err),
            ("NOSUCHTHING", ServerError::Other),
            ("", ServerError::Other),
        ];
        for (code, expected) in cases {
            assert_eq!(ServerError::from_code(code), expected, "code {code:?}");
        }
    }
}
