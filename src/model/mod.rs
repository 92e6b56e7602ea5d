//! The vocabulary every layer speaks: snapshot ids and manifests, secrets and their
//! redaction, values read from the config (spans, sizes, schedules, objectives), the clock.
//! Pure: nothing here does I/O beyond reading the host name and the failpoint variable.

pub mod clock;
pub mod error;
pub mod failpoint;
pub mod host;
pub mod journal;
pub mod redact;
pub mod snapshot;
pub mod values;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ErrorKind;
pub use values::{ByteSize, Objectives, Schedule, SecretString, Span};
