//! What the daemon asks of the kernel so that the pipeline thread is not held up (Linux;
//! elsewhere these do nothing).
//!
//! Only the pipeline thread's delays become alert latency, and on a box with few cores shared
//! with a broker it lost the core in the middle of handing an alert over: probes measured 1–7 ms
//! inside one produce call, every time with one involuntary context switch and no lock wait
//! (BENCHMARKS.md, issue 15). Three settings, each a `[daemon]` key:
//!
//! - **`batch_other_threads`** (on): the whole process runs `SCHED_BATCH` — the same weight
//!   as an ordinary thread, but a woken batch thread waits for the tick or a free core instead
//!   of preempting — and the pipeline thread alone returns to `SCHED_OTHER`. librdkafka's
//!   threads, rust-rdkafka's polling thread and the runtime's workers wake often and no longer
//!   preempt it. New threads inherit their creator's class, so this runs on the main thread
//!   before the runtime and the Kafka clients exist; a client created later from the pipeline
//!   thread (the snapshot reader of a restore) is created inside [`create_threads_batch`].
//! - **`transparent_huge_pages`** (off): the allocator asks for 2 MiB pages, and the first
//!   touch of one stops the touching thread for milliseconds on a VM (measured 5.5 ms for the
//!   two faults inside one produce call); 4 KiB pages spread that cost thinly.
//! - **`pipeline_realtime_priority`** (0, off): the pipeline thread runs `SCHED_FIFO` at this
//!   priority, so no ordinary thread of any process preempts it. It needs `CAP_SYS_NICE` (or an
//!   `RLIMIT_RTPRIO`), so it is off by default; when asked for and refused, the daemon stops
//!   rather than run slower than the operator was told. A thread that never sleeps would starve
//!   ordinary threads on its core; the pipeline sleeps whenever it has nothing fetched, and the
//!   kernel's real-time throttling (`sched_rt_runtime_us`) bounds it under saturation.
//!
//! None of this changes what is computed: the detectors never see time or scheduling.

use std::io;

/// Puts the calling thread, and every thread it creates from now on, in `SCHED_BATCH`.
pub fn batch_this_thread() -> io::Result<()> {
    set_policy(Policy::Batch)
}

/// Returns the calling thread to `SCHED_OTHER` (at its nice value), or with `realtime > 0`
/// puts it in `SCHED_FIFO` at that priority.
pub fn pipeline_thread(realtime: u8) -> io::Result<()> {
    match realtime {
        0 => set_policy(Policy::Normal),
        p => set_policy(Policy::Fifo(p)),
    }
}

/// Runs `create` with the calling thread in `SCHED_BATCH`, then puts the thread back in the
/// class and priority it had, so that the threads `create` starts (a Kafka client's) run batch
/// like the rest of the daemon while the caller keeps its own. A refusal is logged and
/// `create` runs all the same.
pub fn create_threads_batch<T>(create: impl FnOnce() -> T) -> T {
    let Some(saved) = current_policy() else {
        return create();
    };
    apply_or_log("SCHED_BATCH for new threads", batch_this_thread());
    let created = create();
    apply_or_log(
        "class restored after creating threads",
        restore_policy(saved),
    );
    created
}

/// Turns transparent huge pages off for the whole process, from now on.
pub fn small_pages_only() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Logs a refused optional setting; these are optimisations, never a reason to stop.
pub fn apply_or_log(what: &'static str, result: io::Result<()>) {
    if let Err(e) = result {
        tracing::warn!(setting = what, error = %e, "the kernel refused a latency setting; running without it");
    }
}

#[derive(Clone, Copy)]
enum Policy {
    Batch,
    Normal,
    Fifo(u8),
}

#[cfg(target_os = "linux")]
fn set_policy(policy: Policy) -> io::Result<()> {
    let (class, priority) = match policy {
        Policy::Batch => (libc::SCHED_BATCH, 0),
        Policy::Normal => (libc::SCHED_OTHER, 0),
        Policy::Fifo(p) => (libc::SCHED_FIFO, i32::from(p)),
    };
    restore_policy((
        class,
        libc::sched_param {
            sched_priority: priority,
        },
    ))
}

#[cfg(not(target_os = "linux"))]
fn set_policy(_policy: Policy) -> io::Result<()> {
    Ok(())
}

/// The calling thread's scheduling class and parameters (`None`: unknown, or not Linux).
#[cfg(target_os = "linux")]
fn current_policy() -> Option<(i32, libc::sched_param)> {
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is valid for the call's duration.
    let (class, rc) = unsafe {
        (
            libc::sched_getscheduler(0),
            libc::sched_getparam(0, &mut param),
        )
    };
    (class >= 0 && rc == 0).then_some((class, param))
}

#[cfg(not(target_os = "linux"))]
fn current_policy() -> Option<(i32, ())> {
    None
}

/// Puts the calling thread in scheduling class `class` with `param`.
#[cfg(target_os = "linux")]
fn restore_policy((class, param): (i32, libc::sched_param)) -> io::Result<()> {
    // SAFETY: `param` is a valid sched_param for the call's duration; pid 0 is the calling
    // thread (Linux applies the policy per thread).
    let rc = unsafe { libc::sched_setscheduler(0, class, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn restore_policy(_saved: (i32, ())) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn policy_of_this_thread() -> i32 {
        // SAFETY: pid 0 is the calling thread; the call only reads.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn batch_is_inherited_by_new_threads_and_the_pipeline_thread_leaves_it() {
        // On a thread of its own: the test harness's threads are left as they were.
        std::thread::spawn(|| {
            batch_this_thread().unwrap();
            assert_eq!(policy_of_this_thread(), libc::SCHED_BATCH);
            let child = std::thread::spawn(|| {
                let inherited = policy_of_this_thread();
                pipeline_thread(0).unwrap();
                (inherited, policy_of_this_thread())
            })
            .join()
            .unwrap();
            assert_eq!(child, (libc::SCHED_BATCH, libc::SCHED_OTHER));
            // The child's change is its own.
            assert_eq!(policy_of_this_thread(), libc::SCHED_BATCH);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn threads_created_inside_run_batch_and_the_creator_keeps_its_class() {
        std::thread::spawn(|| {
            pipeline_thread(0).unwrap();
            let child = create_threads_batch(|| std::thread::spawn(policy_of_this_thread))
                .join()
                .unwrap();
            assert_eq!(child, libc::SCHED_BATCH);
            assert_eq!(policy_of_this_thread(), libc::SCHED_OTHER);
            // A thread already batch stays batch.
            batch_this_thread().unwrap();
            create_threads_batch(|| ());
            assert_eq!(policy_of_this_thread(), libc::SCHED_BATCH);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn realtime_priority_is_fifo_or_a_clear_refusal() {
        let outcome = std::thread::spawn(|| {
            let r = pipeline_thread(1);
            (r.map_err(|e| e.kind()), policy_of_this_thread())
        })
        .join()
        .unwrap();
        match outcome {
            (Ok(()), policy) => assert_eq!(policy, libc::SCHED_FIFO),
            // Without CAP_SYS_NICE the kernel says so, and nothing changed.
            (Err(kind), policy) => {
                assert_eq!(kind, io::ErrorKind::PermissionDenied);
                assert_eq!(policy, libc::SCHED_OTHER);
            }
        }
    }

    #[test]
    fn huge_pages_can_be_turned_off_for_a_process() {
        // In a child process: the flag is process-wide and would outlive the test.
        if std::env::var_os("SWIPEGUARD_THP_CHILD").is_some() {
            small_pages_only().unwrap();
            // SAFETY: PR_GET_THP_DISABLE takes integer arguments only.
            let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
            assert_eq!(flag, 1);
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new(exe)
            .args([
                "--exact",
                "daemon::os_tuning::tests::huge_pages_can_be_turned_off_for_a_process",
            ])
            .env("SWIPEGUARD_THP_CHILD", "1")
            .status()
            .unwrap();
        assert!(status.success());
    }
}
