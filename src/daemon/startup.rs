//! Start-up against a broker that may not be up yet (DESIGN §5: broker outages are survived, and
//! start-up is no exception).
//!
//! Until the configured brokers answer, the daemon is alive (`/healthz` 200) and not ready:
//! `/readyz` names `kafka.brokers` and librdkafka's last reason, and one log line per
//! [`LOG_EVERY`] (not per attempt) says the same. Attempts back off from [`FIRST_BACKOFF`] to
//! [`MAX_BACKOFF`]; librdkafka reconnects underneath on its own schedule. Cancelling the shutdown
//! token ends the wait at once. Topics are looked up (and the snapshot topic created) only once the
//! broker answers.
//!
//! Faults that no retry fixes end the wait with an error that names what to fix, and an exit code
//! of their own ([`crate::exit`]): credentials or TLS refused, the swipes topic missing, the
//! snapshot topic missing and not creatable, or its partition count different from the swipes
//! topic's (snapshots are placed by swipes partition, so the two must agree).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::ClientContext;
use tokio_util::sync::CancellationToken;

use super::kafka::{self, KafkaSetupError};
use super::DaemonError;
use crate::config::Config;
use crate::health::Health;

/// How long one metadata request may wait for an answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause after the first failed attempt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// At most one "still waiting" log line per this interval.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// Partition counts of the topics the daemon reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topics {
    pub swipes: i32,
    pub snapshot: i32,
}

/// What a Kafka error code means for start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The broker may answer later: wait and try again.
    Transient,
    /// The broker refuses our credentials or certificate, or our principal lacks a permission.
    Refused,
    /// The broker answered no: a request that will not succeed if repeated.
    Permanent,
}

/// Classifies an error code seen while connecting or creating a topic.
pub fn classify(code: RDKafkaErrorCode) -> Fault {
    use RDKafkaErrorCode as C;
    match code {
        C::Authentication
        | C::SSL
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed => Fault::Refused,
        C::InvalidTopic
        | C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::InvalidReplicaAssignment
        | C::InvalidConfig
        | C::PolicyViolation
        | C::InvalidRequest
        | C::UnsupportedVersion
        | C::UnsupportedFeature
        | C::InvalidArgument => Fault::Permanent,
        _ => Fault::Transient,
    }
}

/// The last error librdkafka reported on the start-up client, for the log and `/readyz`.
#[derive(Default)]
struct LastError(Mutex<Option<(RDKafkaErrorCode, String)>>);

impl LastError {
    /// The latest report (librdkafka suppresses repeats of one error, so it is kept, not taken).
    fn latest(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The start-up client's context: remembers librdkafka's errors instead of logging each one
/// (an unreachable broker reports one per reconnect).
#[derive(Clone, Default)]
struct ProbeCtx(Arc<LastError>);

impl ClientContext for ProbeCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        let Some(code) = error.rdkafka_error_code() else {
            return;
        };
        let mut last = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        // "All brokers are down" follows each transport failure and says less than it.
        if code == RDKafkaErrorCode::AllBrokersDown && last.is_some() {
            return;
        }
        *last = Some((code, reason.to_string()));
    }

    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, _: &str, _: &str) {}
}

impl rdkafka::producer::ProducerContext for ProbeCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

/// What one attempt found.
enum Attempt {
    Ready(Topics),
    Retry(String),
}

/// Waits for the brokers, then looks the topics up and creates the snapshot topic if missing.
/// Returns `Ok(None)` when `shutdown` was cancelled first.
pub async fn connect(
    config: &Config,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<Option<Topics>, DaemonError> {
    let brokers = config.kafka.brokers.clone().unwrap_or_default();
    let ctx = ProbeCtx::default();
    let clients = Clients {
        // A plain client for metadata: polling it delivers librdkafka's error reports to `ctx`
        // (an admin client never polls the queue they arrive on).
        metadata: Arc::new(
            kafka::producer_config(config)?
                .set("statistics.interval.ms", "0")
                // A look-up must not create the topic it looks for (with the broker's defaults).
                .set("allow.auto.create.topics", "false")
                .create_with_context(ctx.clone())
                .map_err(|source| KafkaSetupError::Client {
                    client: "metadata client",
                    source,
                })?,
        ),
        admin: kafka::producer_config(config)?
            .set("statistics.interval.ms", "0")
            .create()
            .map_err(|source| KafkaSetupError::Client {
                client: "admin client",
                source,
            })?,
        last: ctx.0.clone(),
    };
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u64;
    let mut logged: Option<Instant> = None;
    loop {
        attempts += 1;
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            a = attempt(config, &clients) => a?,
        };
        let reason = match attempt {
            Attempt::Ready(topics) => {
                health.set_waiting(None);
                if attempts > 1 {
                    tracing::info!(
                        brokers = %brokers,
                        waited_s = started.elapsed().as_secs(),
                        attempts,
                        "the kafka brokers answered"
                    );
                }
                return Ok(Some(topics));
            }
            Attempt::Retry(reason) => reason,
        };
        health.set_waiting(Some(format!(
            "waiting for kafka.brokers {brokers}: {reason}"
        )));
        if logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            logged = Some(Instant::now());
            tracing::warn!(
                brokers = %brokers,
                %reason,
                waited_s = started.elapsed().as_secs(),
                attempts,
                "waiting for the kafka brokers (kafka.brokers); retrying, logged once per 30 s"
            );
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The start-up clients.
struct Clients {
    metadata: Arc<BaseProducer<ProbeCtx>>,
    admin: AdminClient<DefaultClientContext>,
    last: Arc<LastError>,
}

/// One try: metadata of the swipes and snapshot topics, creating the latter if missing.
async fn attempt(config: &Config, clients: &Clients) -> Result<Attempt, DaemonError> {
    let swipes_topic = config.kafka.swipes_topic.as_str();
    let snapshot_topic = config.kafka.snapshot_topic.as_str();
    let swipes = match partition_count(clients, swipes_topic).await? {
        Lookup::Partitions(n) => n,
        Lookup::Missing => {
            return Err(DaemonError::NoSwipesTopic {
                topic: swipes_topic.to_string(),
                brokers: config.kafka.brokers.clone().unwrap_or_default(),
                error: "no such topic".into(),
            })
        }
        Lookup::Unusable(code) => {
            return Err(DaemonError::NoSwipesTopic {
                topic: swipes_topic.to_string(),
                brokers: config.kafka.brokers.clone().unwrap_or_default(),
                error: code.to_string(),
            })
        }
        Lookup::Unanswered(reason) => return Ok(Attempt::Retry(reason)),
    };
    let snapshot = match ensure_topic(clients, snapshot_topic, swipes, true).await? {
        Ok(n) => n,
        Err(reason) => return Ok(Attempt::Retry(reason)),
    };
    if snapshot != swipes {
        return Err(DaemonError::PartitionMismatch {
            swipes_topic: swipes_topic.to_string(),
            swipes,
            snapshot_topic: snapshot_topic.to_string(),
            snapshot,
        });
    }
    for kind in config.live_kinds() {
        if kind == swipeguard_detectors::KeyKind::Card {
            continue;
        }
        let topic = super::stages::internal_topic(&config.kafka.internal_topic_prefix, kind);
        let n = match ensure_topic(clients, &topic, swipes, false).await? {
            Ok(n) => n,
            Err(reason) => return Ok(Attempt::Retry(reason)),
        };
        if n != swipes {
            return Err(DaemonError::InternalPartitionMismatch {
                topic,
                partitions: n,
                swipes_topic: swipes_topic.to_string(),
                swipes,
            });
        }
    }
    Ok(Attempt::Ready(Topics { swipes, snapshot }))
}

/// `topic`'s partition count, creating it with `partitions` (compacted or not) if it is
/// missing; `Err(reason)` when the broker must be asked again.
async fn ensure_topic(
    clients: &Clients,
    topic: &str,
    partitions: i32,
    compacted: bool,
) -> Result<Result<i32, String>, DaemonError> {
    let last = &clients.last;
    let cannot = |error: String| DaemonError::CannotCreateTopic {
        topic: topic.to_string(),
        partitions,
        error,
    };
    match partition_count(clients, topic).await? {
        Lookup::Partitions(n) => return Ok(Ok(n)),
        Lookup::Unanswered(reason) => return Ok(Err(reason)),
        Lookup::Unusable(code) => return Err(cannot(code.to_string())),
        Lookup::Missing => {}
    }
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    if compacted {
        new = new.set("cleanup.policy", "compact");
    }
    let options = AdminOptions::new().request_timeout(Some(ATTEMPT_TIMEOUT * 5));
    let results = match clients.admin.create_topics([&new], &options).await {
        Ok(results) => results,
        Err(e) => return Ok(Err(retry_reason(e, last)?)),
    };
    for result in results {
        let Err((_, code)) = result else { continue };
        match classify(code) {
            _ if code == RDKafkaErrorCode::TopicAlreadyExists => {}
            Fault::Transient => return Ok(Err(format!("creating the topic {topic}: {code}"))),
            Fault::Refused | Fault::Permanent => return Err(cannot(code.to_string())),
        }
    }
    match partition_count(clients, topic).await? {
        Lookup::Partitions(n) => {
            tracing::info!(%topic, partitions = n, "created the topic");
            Ok(Ok(n))
        }
        // Created but not yet in the metadata: look again on the next attempt.
        Lookup::Missing | Lookup::Unusable(_) => Ok(Err(format!(
            "the topic {topic} is created but not yet visible"
        ))),
        Lookup::Unanswered(reason) => Ok(Err(reason)),
    }
}

enum Lookup {
    Partitions(i32),
    Missing,
    /// The broker says the topic cannot be used as named (an invalid name, for instance).
    Unusable(RDKafkaErrorCode),
    Unanswered(String),
}

/// A topic's partition count from the broker's metadata.
async fn partition_count(clients: &Clients, topic: &str) -> Result<Lookup, DaemonError> {
    let client = clients.metadata.clone();
    let name = topic.to_string();
    // librdkafka blocks until the broker answers or the timeout passes: off the async threads.
    let metadata = tokio::task::spawn_blocking(move || {
        let md = client
            .client()
            .fetch_metadata(Some(&name), Timeout::After(ATTEMPT_TIMEOUT))
            .map(|md| {
                md.topics()
                    .iter()
                    .find(|t| t.name() == name)
                    .map(|t| (t.error().map(RDKafkaErrorCode::from), t.partitions().len()))
            });
        // Deliver the error reports queued meanwhile to the context (a poll serves them for
        // as long as it lasts).
        client.poll(Duration::from_millis(20));
        md
    })
    .await
    .map_err(|_| DaemonError::PipelinePanicked)?;
    let found = match metadata {
        Ok(found) => found,
        Err(e) => return Ok(Lookup::Unanswered(retry_reason(e, &clients.last)?)),
    };
    Ok(match found {
        None | Some((Some(RDKafkaErrorCode::UnknownTopicOrPartition), _)) => Lookup::Missing,
        Some((Some(code), _)) => match classify(code) {
            Fault::Refused => {
                return Err(DaemonError::Refused {
                    what: format!("topic {topic}"),
                    reason: code.to_string(),
                })
            }
            Fault::Permanent => Lookup::Unusable(code),
            Fault::Transient => Lookup::Unanswered(format!("topic {topic}: {code}")),
        },
        Some((None, 0)) => Lookup::Missing,
        Some((None, n)) => Lookup::Partitions(n as i32),
    })
}

/// A request that failed: refused credentials end the wait; anything else is retried, with the
/// most telling reason librdkafka gave (its error callback says which address failed and why).
fn retry_reason(e: KafkaError, last: &LastError) -> Result<String, DaemonError> {
    let reported = last.latest();
    if let Some((code, reason)) = &reported {
        if classify(*code) == Fault::Refused {
            return Err(DaemonError::Refused {
                what: "the connection to kafka.brokers".into(),
                reason: format!("{code}: {reason}"),
            });
        }
    }
    if let Some(code) = e.rdkafka_error_code() {
        if classify(code) == Fault::Refused {
            return Err(DaemonError::Refused {
                what: "a request to kafka.brokers".into(),
                reason: code.to_string(),
            });
        }
    }
    Ok(match reported {
        Some((_, reason)) => reason,
        None => e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_trouble_is_waited_for_and_refusals_are_not() {
        use RDKafkaErrorCode as C;
        for code in [
            C::BrokerTransportFailure,
            C::AllBrokersDown,
            C::Resolve,
            C::OperationTimedOut,
            C::LeaderNotAvailable,
            C::NotController,
            C::RequestTimedOut,
        ] {
            assert_eq!(classify(code), Fault::Transient, "{code:?}");
        }
        for code in [
            C::Authentication,
            C::SSL,
            C::SaslAuthenticationFailed,
            C::TopicAuthorizationFailed,
            C::ClusterAuthorizationFailed,
        ] {
            assert_eq!(classify(code), Fault::Refused, "{code:?}");
        }
        for code in [
            C::InvalidTopic,
            C::PolicyViolation,
            C::InvalidReplicationFactor,
        ] {
            assert_eq!(classify(code), Fault::Permanent, "{code:?}");
        }
    }

    #[test]
    fn the_most_telling_reason_is_kept() {
        let last = LastError::default();
        let ctx = ProbeCtx(Arc::new(last));
        ctx.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused",
        );
        ctx.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let e = KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut);
        match retry_reason(e, &ctx.0) {
            Ok(reason) => assert!(reason.contains("Connection refused"), "{reason}"),
            _ => panic!("a refused connection is transient"),
        }
        ctx.error(
            KafkaError::Global(RDKafkaErrorCode::SSL),
            "127.0.0.1:9/bootstrap: SSL handshake failed",
        );
        let e = KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut);
        match retry_reason(e, &ctx.0) {
            Err(DaemonError::Refused { reason, .. }) => assert!(reason.contains("SSL"), "{reason}"),
            _ => panic!("a TLS failure is not waited for"),
        }
    }
}
