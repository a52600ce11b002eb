//! `swipeguard run`: the daemon beside the fund's bus (DESIGN §5).
//!
//! One consumer-group member reads the swipes topic (and, with `daemon.live_stages`, the
//! internal topics of the other stages: [`stages`]); each assigned partition gets its own
//! [`Engine`](swipeguard_detectors::Engine), restored from the newest snapshot on assignment and
//! snapshotted on a cadence, on revocation and on shutdown. Alerts go to the alerts topic and
//! invalid, late and duplicate events to the dead-letter topic through one idempotent producer;
//! nothing is committed before the broker has acknowledged what it depends on
//! ([`partition`] states the promise). A partition reads [`source::SourceRecord`]s and sends
//! to a [`delivery::Sink`]: the consumer's messages and the producer here, records in memory
//! in its unit tests ([`memory`]). The pipeline is one synchronous thread; the rebalance
//! callbacks run inside its consumer poll, when it holds no lock. The async shell around it
//! serves HTTP and turns signals into the shutdown value.

pub mod delivery;
pub mod kafka;
pub mod memory;
pub mod os_tuning;
pub mod partition;
pub mod pipeline;
pub mod rebalance;
pub mod reload;
pub mod snapshots;
pub mod source;
pub mod stages;
pub mod startup;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::Producer as _;
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use crate::codec::DecodeLimits;
use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use kafka::{KafkaSetupError, Producer, ProducerCtx};
use partition::{Ctx, Partition, SnapshotCtx};
use rebalance::ConsumerCtx;
use snapshots::SnapshotStore;
use stages::{Downstream, PartitionId};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Send(#[from] delivery::SendError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("the swipes topic {topic} (kafka.swipes_topic) cannot be read from {brokers}: {error}; create it, or correct the name")]
    NoSwipesTopic {
        topic: String,
        brokers: String,
        error: String,
    },
    #[error("the shadow topic {topic} does not exist: detectors with shadow = true send their alerts there; create it (as many partitions as kafka.alerts_topic) or turn shadow off")]
    NoShadowTopic { topic: String },
    #[error("the snapshot topic {topic} (kafka.snapshot_topic) does not exist and cannot be created with {partitions} partitions: {error}; create it (compacted, {partitions} partitions) or allow the daemon to")]
    CannotCreateTopic {
        topic: String,
        partitions: i32,
        error: String,
    },
    #[error("the snapshot topic {snapshot_topic} has {snapshot} partitions but the swipes topic {swipes_topic} has {swipes}: snapshots are placed by swipes partition, so give the snapshot topic {swipes} partitions (a new kafka.snapshot_topic starts every partition cold)")]
    PartitionMismatch {
        swipes_topic: String,
        swipes: i32,
        snapshot_topic: String,
        snapshot: i32,
    },
    #[error("the internal topic {topic} has {partitions} partitions but the swipes topic {swipes_topic} has {swipes}: a stage's partitions must match the swipes topic's; recreate it with {swipes} (it holds only forwarded events and watermarks)")]
    InternalPartitionMismatch {
        topic: String,
        partitions: i32,
        swipes_topic: String,
        swipes: i32,
    },
    #[error("kafka refused {what}: {reason}; check the credentials, certificates and ACLs in [kafka.client]")]
    Refused { what: String, reason: String },
    #[error("daemon.pipeline_realtime_priority = {priority}: the kernel refused SCHED_FIFO for the pipeline thread ({source}); grant the daemon CAP_SYS_NICE (systemd: AmbientCapabilities=CAP_SYS_NICE) or set the key to 0")]
    RealtimeRefused {
        priority: u8,
        source: std::io::Error,
    },
    #[error("the pipeline thread panicked (a bug: please report it)")]
    PipelinePanicked,
    #[error("shutdown did not finish within the grace period; unsnapshotted partitions will be reprocessed")]
    GraceExceeded,
}

impl DaemonError {
    /// The process exit code for this error ([`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Setup(_) | DaemonError::RealtimeRefused { .. } => crate::exit::CONFIG,
            DaemonError::NoSwipesTopic { .. }
            | DaemonError::NoShadowTopic { .. }
            | DaemonError::CannotCreateTopic { .. }
            | DaemonError::PartitionMismatch { .. }
            | DaemonError::InternalPartitionMismatch { .. } => crate::exit::KAFKA_RESOURCE,
            DaemonError::Refused { .. } => crate::exit::KAFKA_REFUSED,
            _ => crate::exit::FAILURE,
        }
    }
}

/// A partition as the consumer's statistics (every `statistics.interval.ms`) last reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchView {
    /// The broker's high watermark: the offset its next record will take.
    pub high: i64,
    /// Read to its end: the client's fetch position has reached the high watermark (past any
    /// transaction markers, which take offsets but are never handed over) with nothing waiting
    /// in its queue, so whatever the broker held has been handed over.
    pub at_end: bool,
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
    pub partitions: Mutex<BTreeMap<PartitionId, Partition>>,
    /// What the consumer's statistics last reported of each partition read.
    pub fetch_views: Mutex<HashMap<PartitionId, FetchView>>,
    pub limits: DecodeLimits,
    /// Decoding of forwarded events (their ids are hashed already).
    pub internal_limits: DecodeLimits,
    /// The live stages other than the card's, with their internal topics.
    pub downstreams: Vec<Downstream>,
    /// Partitions of the swipes topic (and of every internal topic).
    pub swipes_partitions: u32,
    /// Error and warning logs of the pipeline and the Kafka clients, at most one per kind per 10 s.
    pub log_limiter: crate::telemetry::LogLimiter,
    pub swipes_topic: String,
    pub alerts_topic: Arc<str>,
    /// `<alerts_topic>.shadow`: alerts of detectors with `shadow = true`.
    pub shadow_topic: Arc<str>,
    pub dead_letter_topic: Arc<str>,
    /// The live detection configuration (replaced by a SIGHUP reload).
    pub live: Mutex<reload::Live>,
    /// The runtime whose timer bounds the pipeline's waits for delivery reports.
    pub runtime: tokio::runtime::Handle,
}

impl Shared {
    /// The partitions, even if a panic poisoned the lock (their state is still consistent: every
    /// mutation is a single engine call or queue push).
    pub fn partitions(&self) -> MutexGuard<'_, BTreeMap<PartitionId, Partition>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live detection configuration now.
    pub fn live(&self) -> reload::Live {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            sink: &self.producer,
            metrics: &self.metrics,
            limits: &self.limits,
            alerts_topic: &self.alerts_topic,
            shadow_topic: &self.shadow_topic,
            dead_letter_topic: &self.dead_letter_topic,
            log_limiter: &self.log_limiter,
            runtime: &self.runtime,
            downstreams: &self.downstreams,
            partitions: self.swipes_partitions,
            internal_limits: &self.internal_limits,
        }
    }

    /// The stage partition a record of `topic` belongs to (`None`: not a topic read here).
    pub fn partition_of(&self, topic: &str, id: i32) -> Option<PartitionId> {
        if topic == self.swipes_topic {
            return Some(PartitionId::card(id));
        }
        self.downstreams
            .iter()
            .find(|d| &*d.topic == topic)
            .map(|d| PartitionId { stage: d.kind, id })
    }

    /// The topic a stage partition reads.
    pub fn topic_of(&self, stage: swipeguard_detectors::KeyKind) -> Arc<str> {
        self.downstreams
            .iter()
            .find(|d| d.kind == stage)
            .map_or_else(|| self.swipes_topic.as_str().into(), |d| d.topic.clone())
    }

    /// Every topic the consumer reads.
    pub fn topics(&self) -> Vec<&str> {
        std::iter::once(self.swipes_topic.as_str())
            .chain(self.downstreams.iter().map(|d| &*d.topic))
            .collect()
    }

    pub fn snapshot_ctx(&self) -> SnapshotCtx<'_> {
        SnapshotCtx {
            producer: &self.snapshot_producer,
            store: &self.snapshots,
            metrics: &self.metrics,
            runtime: &self.runtime,
        }
    }
}

/// Runs the daemon until `shutdown` is cancelled, then drains, snapshots and commits.
pub async fn run(
    config: Arc<Config>,
    config_path: Option<std::path::PathBuf>,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let hangups = reload::listen();
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
            "these detectors are keyed by something other than the card and run in replay only (daemon.live_stages = true runs them live)"
        );
    }
    let topics = match startup::connect(&config, &health, &shutdown).await {
        Ok(Some(topics)) => topics,
        Ok(None) => {
            tracing::info!("stopped while waiting for the kafka brokers");
            let _ = http.await;
            return Ok(());
        }
        Err(e) => {
            shutdown.cancel();
            let _ = http.await;
            return Err(e);
        }
    };
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
        snapshots: SnapshotStore::new(&config, kafka::reader_config(&config)?, topics.snapshot),
        producer,
        snapshot_producer,
        partitions: Mutex::new(BTreeMap::new()),
        fetch_views: Mutex::new(HashMap::new()),
        limits: config.decode_limits(),
        internal_limits: crate::codec::DecodeLimits {
            hasher: None,
            ..config.decode_limits()
        },
        downstreams: config
            .live_kinds()
            .into_iter()
            .filter(|k| *k != swipeguard_detectors::KeyKind::Card)
            .map(|kind| Downstream {
                kind,
                topic: stages::internal_topic(&config.kafka.internal_topic_prefix, kind).into(),
            })
            .collect(),
        swipes_partitions: topics.swipes.max(1) as u32,
        log_limiter: crate::telemetry::LogLimiter::new(std::time::Duration::from_secs(10)),
        swipes_topic: config.kafka.swipes_topic.clone(),
        alerts_topic: config.kafka.alerts_topic.as_str().into(),
        shadow_topic: reload::shadow_topic(&config.kafka.alerts_topic).into(),
        dead_letter_topic: config.kafka.dead_letter_topic.as_str().into(),
        live: Mutex::new(reload::Live::new(&config)),
        runtime: tokio::runtime::Handle::current(),
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

    let needs_shadow = reload::any_shadow(&config.live_engine_config().detectors);
    let has_shadow = !needs_shadow || {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || reload::topic_exists(&shared, &shared.shadow_topic))
            .await
            .unwrap_or(false)
    };
    if needs_shadow && !has_shadow {
        shutdown.cancel();
        let _ = http.await;
        return Err(DaemonError::NoShadowTopic {
            topic: shared.shadow_topic.to_string(),
        });
    }
    if let Some(path) = config_path {
        tokio::spawn(reload::on_sighup(
            hangups,
            path,
            shared.clone(),
            shutdown.clone(),
        ));
    }
    // The pipeline is synchronous (the core is): it gets a thread of its own and blocks in the
    // consumer's poll; the async shell around it serves HTTP and signals.
    let pipeline_shared = shared.clone();
    let token = shutdown.clone();
    let result = tokio::task::spawn_blocking(move || {
        let daemon = &pipeline_shared.config.daemon;
        if daemon.pipeline_realtime_priority > 0 {
            // Asked for by the operator: refused, the daemon stops and says why.
            os_tuning::pipeline_thread(daemon.pipeline_realtime_priority).map_err(|source| {
                DaemonError::RealtimeRefused {
                    priority: daemon.pipeline_realtime_priority,
                    source,
                }
            })?;
        } else if daemon.batch_other_threads {
            os_tuning::apply_or_log("pipeline thread SCHED_OTHER", os_tuning::pipeline_thread(0));
        }
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
