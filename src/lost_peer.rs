//! A cluster stops when one of its processes stops (timely's model): the survivors'
//! connections to it fail and timely's networking threads panic ("timely
//! communication error"), followed by every worker. Instead of a panic with a
//! backtrace from each thread, a surviving process says what happened and what to do,
//! and exits 1 at once. Nothing more is lost by not finishing: what it would have
//! flushed is in its last checkpoint and its write-ahead log, as after a crash, and
//! the cluster is restarted as a whole (docs/scaling.md).

/// Installs the panic hook: a panic on one of timely's networking threads (named
/// `timely:send-P` / `timely:recv-P`, P the peer process) ends this process with one
/// error line; any other panic goes to the hook that was there before.
pub fn exit_when_a_peer_is_lost() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or_default();
        let Some(peer) = name
            .strip_prefix("timely:recv-")
            .or_else(|| name.strip_prefix("timely:send-"))
        else {
            previous(info);
            return;
        };
        let cause = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("no reason given");
        tracing::error!(peer, cause, "lost the connection to process {peer}");
        eprintln!(
            "error: lost the connection to process {peer} ({cause}): a cluster stops when \
             one of its processes stops. Start every process again; each resumes from its \
             checkpoint and write-ahead log (docs/scaling.md)"
        );
        std::process::exit(1);
    }));
}
