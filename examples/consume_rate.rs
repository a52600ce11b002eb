//! How fast can a bare librdkafka consumer read a topic from the local nisshi broker? The
//! ceiling for the daemon's end-to-end throughput (BENCHMARKS.md). Usage:
//!   cargo run --release --example consume_rate -- BOOTSTRAP TOPIC EXPECTED
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::util::Timeout;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (bootstrap, topic, expected) = (&args[1], &args[2], args[3].parse::<usize>().unwrap_or(0));
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("rate-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    // Extra properties as K=V arguments after the first three, to compare configurations.
    for kv in &args[4..] {
        if let Some((k, v)) = kv.split_once('=') {
            config.set(k, v);
        }
    }
    let consumer: BaseConsumer = config.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut n = 0usize;
    let mut started = None;
    while n < expected {
        if let Some(Ok(_)) = consumer.poll(Timeout::After(Duration::from_millis(100))) {
            started.get_or_insert_with(Instant::now);
            n += 1;
        }
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    println!("consumed {n} in {secs:.2} s = {:.0}/s", n as f64 / secs);
}
