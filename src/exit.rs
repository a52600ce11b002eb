//! Exit codes of `swipeguard run` and `check-config`, so that a service manager can tell a fault
//! worth retrying from one that needs an operator (the systemd unit in `deploy/` relies on them;
//! the values are sysexits.h's).

/// Stopped on request, or finished.
pub const OK: u8 = 0;
/// Anything else: worth a restart (a panic, a port still held by the previous instance).
pub const FAILURE: u8 = 1;
/// A Kafka resource is not as the daemon needs it (a topic missing and not creatable,
/// partition counts that disagree): fix the topic, then start again.
pub const KAFKA_RESOURCE: u8 = 69;
/// The broker refused our credentials, certificate or permissions (SASL, TLS, ACLs).
pub const KAFKA_REFUSED: u8 = 77;
/// The configuration is invalid; the message names the key.
pub const CONFIG: u8 = 78;
