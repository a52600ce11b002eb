//! `swipeguard run`: the daemon beside the fund's bus (DESIGN §5).
//!
//! One consumer-group member reads the swipes topic; each assigned partition gets its own
//! [`Engine`](swipeguard_detectors::Engine), restored from the newest snapshot on assignment and
//! snapshotted on a cadence, on revocation and on shutdown. Alerts go to the alerts topic and
//! invalid, late and duplicate events to the dead-letter topic through one idempotent producer;
//! nothing is committed before the broker has acknowledged what it depends on
//! ([`partition`] states the promise). The pipeline is one synchronous thread; the rebalance
//! callbacks run inside its consumer poll, when it holds no lock. The async shell around it
//! serves HTTP and turns signals into the shutdown value.

pub mod kafka;
pub mod partition;
pub mod pipeline;
pub mod rebalance;
pub mod snapshots;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::Producer as _;
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use crate::codec::DecodeLimits;
use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use kafka::{KafkaSetupError, Producer, ProducerCtx};
use partition::{Ctx, Partition};
use rebalance::ConsumerCtx;
use snapshots::SnapshotStore;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Send(#[from] partition::SendError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("the swipes topic {0} does not exist or has no partitions")]
    NoSwipesTopic(String),
    #[error("the pipeline thread panicked (a bug: please report it)")]
    PipelinePanicked,
    #[error("shutdown did not finish within the grace period; unsnapshotted partitions will be reprocessed")]
    GraceExceeded,
}

/// What the pipeline and the rebalance callbacks share.
pub struct Shared {
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    /// Alerts and dead letters.
    pub producer: Producer,
    /// Snapshots, on a connection of their own: megabytes of state never queue ahead of an alert.
    pub snapshot_producer: Producer,
    pub snapshots: SnapshotStore,
    pub partitions: Mutex<BTreeMap<i32, Partition>>,
    /// High watermarks of the swipes partitions, from the consumer's statistics.
    pub high_watermarks: Mutex<HashMap<i32, i64>>,
    pub limits: DecodeLimits,
    /// Error and warning logs of the pipeline and the Kafka clients, at most one per kind per 10 s.
    pub log_limiter: crate::telemetry::LogLimiter,
    pub swipes_topic: String,
    pub alerts_topic: Arc<str>,
    pub dead_letter_topic: Arc<str>,
}

impl Shared {
    /// The partitions, even if a panic poisoned the lock (their state is still consistent: every
    /// mutation is a single engine call or queue push).
    pub fn partitions(&self) -> MutexGuard<'_, BTreeMap<i32, Partition>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            producer: &self.producer,
            metrics: &self.metrics,
            limits: &self.limits,
            alerts_topic: &self.alerts_topic,
            dead_letter_topic: &self.dead_letter_topic,
            log_limiter: &self.log_limiter,
        }
    }
}

/// Creates the snapshot topic (compacted, as many partitions as the swipes topic) if it is
/// missing; returns the partition counts of the swipes and snapshot topics.
async fn ensure_topics(config: &Config) -> Result<(i32, i32), DaemonError> {
    let admin: AdminClient<DefaultClientContext> = kafka::producer_config(config)?.create()?;
    let timeout = Timeout::After(std::time::Duration::from_secs(10));
    let count = |topic: &str| -> Result<i32, DaemonError> {
        let md = admin.inner().fetch_metadata(Some(topic), timeout)?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32))
    };
    let swipes = count(&config.kafka.swipes_topic)?;
    if swipes == 0 {
        return Err(DaemonError::NoSwipesTopic(
            config.kafka.swipes_topic.clone(),
        ));
    }
    let mut snapshot = count(&config.kafka.snapshot_topic)?;
    if snapshot == 0 {
        let topic = NewTopic::new(
            &config.kafka.snapshot_topic,
            swipes,
            TopicReplication::Fixed(1),
        )
        .set("cleanup.policy", "compact");
        let results = admin.create_topics([&topic], &AdminOptions::new()).await?;
        for r in results {
            if let Err((topic, e)) = r {
                tracing::warn!(%topic, error = %e, "cannot create the snapshot topic; expecting it to exist");
            }
        }
        snapshot = count(&config.kafka.snapshot_topic)?.max(1);
        tracing::info!(topic = %config.kafka.snapshot_topic, partitions = snapshot, "created the snapshot topic");
    }
    Ok((swipes, snapshot))
}

/// Runs the daemon until `shutdown` is cancelled, then drains, snapshots and commits.
pub async fn run(
    config: Arc<Config>,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: config.http.listen.clone(),
            source,
        })?;
    tracing::info!(listen = %config.http.listen, "serving /metrics, /healthz and /readyz");
    let http = tokio::spawn(crate::http::serve(
        listener,
        metrics.clone(),
        health.clone(),
        shutdown.child_token(),
    ));

    let replay_only = config.replay_only_detectors();
    if !replay_only.is_empty() {
        let names: Vec<&str> = replay_only.iter().map(|d| d.as_str()).collect();
        tracing::warn!(
            detectors = %names.join(","),
            "these detectors are keyed by something other than the card and run in replay only until the daemon has live stages"
        );
    }
    let (_, snapshot_partitions) = ensure_topics(&config).await?;
    metrics.touch_topics(&[
        &config.kafka.alerts_topic,
        &config.kafka.dead_letter_topic,
        &config.kafka.snapshot_topic,
    ]);
    let producer: Producer = kafka::producer_config(&config)?
        .create_with_context(ProducerCtx {
            metrics: metrics.clone(),
            health: health.clone(),
        })
        .map_err(|source| KafkaSetupError::Client {
            client: "producer",
            source,
        })?;
    let snapshot_producer: Producer = kafka::producer_config(&config)?
        .create_with_context(ProducerCtx {
            metrics: metrics.clone(),
            health: health.clone(),
        })
        .map_err(|source| KafkaSetupError::Client {
            client: "snapshot producer",
            source,
        })?;
    let shared = Arc::new(Shared {
        snapshots: SnapshotStore::new(&config, kafka::reader_config(&config)?, snapshot_partitions),
        producer,
        snapshot_producer,
        partitions: Mutex::new(BTreeMap::new()),
        high_watermarks: Mutex::new(HashMap::new()),
        limits: config.decode_limits(),
        log_limiter: crate::telemetry::LogLimiter::new(std::time::Duration::from_secs(10)),
        swipes_topic: config.kafka.swipes_topic.clone(),
        alerts_topic: config.kafka.alerts_topic.as_str().into(),
        dead_letter_topic: config.kafka.dead_letter_topic.as_str().into(),
        metrics,
        health,
        config: config.clone(),
    });
    let consumer: BaseConsumer<ConsumerCtx> = kafka::consumer_config(&config)?
        .create_with_context(ConsumerCtx {
            shared: shared.clone(),
        })
        .map_err(|source| KafkaSetupError::Client {
            client: "consumer",
            source,
        })?;

    // The pipeline is synchronous (the core is): it gets a thread of its own and blocks in the
    // consumer's poll; the async shell around it serves HTTP and signals.
    let pipeline_shared = shared.clone();
    let token = shutdown.clone();
    let result = tokio::task::spawn_blocking(move || {
        let result = pipeline::run(&pipeline_shared, &consumer, &token);
        drop(consumer);
        result
    })
    .await
    .unwrap_or(Err(DaemonError::PipelinePanicked));
    let _ = shared
        .producer
        .flush(Timeout::After(std::time::Duration::from_secs(5)));
    let _ = shared
        .snapshot_producer
        .flush(Timeout::After(std::time::Duration::from_secs(5)));
    shutdown.cancel();
    let _ = http.await;
    result
}
