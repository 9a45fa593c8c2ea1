//! How the processes of a cluster run share one `mqtt` source: which of them
//! subscribe, to what, under which client id. Decided per process at start, from the
//! options planned once.
//!
//! Every process that subscribes hands its messages to its own decoder, and the
//! readings are exchanged by sensor after `decode` as they are between workers, so a
//! sensor's readings meet on one worker whichever process received them.

use std::path::Path;

use smartgrid_runtime::PlanContext;

use super::config::{ClusterSubscribe, MqttConfig};
use crate::io::mqtt::{ConnectOptions, Endpoint, SubscribeOptions};

/// The planned `cluster:` settings.
#[derive(Clone, Debug)]
pub(super) struct PlannedCluster {
    subscribe: ClusterSubscribe,
    /// The shared subscription's group (checked: a valid topic level).
    group: String,
}

/// What one process of a run subscribes to, and as whom.
#[derive(Debug)]
pub(super) struct ProcessShare {
    pub connect: ConnectOptions,
    pub subscribe: SubscribeOptions,
    /// Whether this process's files (the write-ahead log) need a name of their own:
    /// true wherever more than one process subscribes, except the first, which keeps
    /// the single process's names so a pipeline can grow into a cluster.
    pub own_files: bool,
}

/// Plans `cluster:`; the group must be one topic level (`$share/<group>/<filter>`).
pub(super) fn plan(config: &MqttConfig, ctx: &mut PlanContext<'_>) -> Option<PlannedCluster> {
    let group = config.share_group(ctx.pipeline, &ctx.node.name);
    if group.is_empty() || group.contains(['/', '+', '#']) || group.chars().any(char::is_control) {
        let message = format!("`{group}` cannot be a shared subscription's group");
        let hint = "use one topic level: letters, digits, `-`, `_`, `.`";
        super::node::nested_problem(ctx, "cluster", "group", message, hint);
        return None;
    }
    Some(PlannedCluster {
        subscribe: config.cluster.subscribe,
        group,
    })
}

impl PlannedCluster {
    /// Process `index` of `count`'s subscription, or `None` if it subscribes to
    /// nothing (not the first process with `first` or an embedded broker, or no filter
    /// left for it with `topics`).
    pub fn share(
        &self,
        connect: &ConnectOptions,
        subscribe: &SubscribeOptions,
        index: usize,
        count: usize,
    ) -> Option<ProcessShare> {
        // The embedded broker lives in the first process, on its loopback: no other
        // process can reach it.
        let mode = if count <= 1 || connect.endpoint == Endpoint::Embedded {
            ClusterSubscribe::First
        } else {
            self.subscribe
        };
        let mut connect = connect.clone();
        let mut subscribe = subscribe.clone();
        match mode {
            ClusterSubscribe::First if index == 0 => {
                return Some(ProcessShare {
                    connect,
                    subscribe,
                    own_files: false,
                });
            }
            ClusterSubscribe::First => return None,
            ClusterSubscribe::Shared => {
                subscribe.topics = subscribe
                    .topics
                    .iter()
                    .map(|filter| format!("$share/{}/{filter}", self.group))
                    .collect();
            }
            ClusterSubscribe::Topics => {
                subscribe.topics = subscribe
                    .topics
                    .iter()
                    .skip(index)
                    .step_by(count)
                    .cloned()
                    .collect();
                if subscribe.topics.is_empty() {
                    tracing::warn!(
                        "process {index} of {count} has no topic filter of its own (list at \
                         least as many `topics` as processes): it subscribes to nothing"
                    );
                    return None;
                }
            }
        }
        // Each process keeps its own session: one id for two connections would have
        // the broker disconnect one whenever the other connects.
        connect.identity.client_id = format!("{}-p{index}", connect.identity.client_id);
        Some(ProcessShare {
            connect,
            subscribe,
            own_files: index > 0,
        })
    }
}

/// `path` with the process index in its name (`data/clemap.wal` → `data/clemap.p1.wal`
/// for process 1); process 0 keeps `path`.
pub(super) fn per_process(path: &Path, index: usize) -> std::path::PathBuf {
    crate::delivery::record_letters::per_process(path, index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mqtt::ClientIdentity;

    fn options(url: &str) -> (ConnectOptions, SubscribeOptions) {
        let endpoint = Endpoint::parse(url).expect("url");
        let connect = ConnectOptions::new(endpoint, ClientIdentity::new("smartgrid-home-meters"));
        (connect, SubscribeOptions::new(["a/+", "b/+", "c/+"]))
    }

    fn cluster(subscribe: ClusterSubscribe) -> PlannedCluster {
        PlannedCluster {
            subscribe,
            group: "g".into(),
        }
    }

    #[test]
    fn shared_subscriptions_prefix_every_filter_and_give_each_process_its_id() {
        let (connect, subscribe) = options("mqtt://127.0.0.1:1883");
        let shares: Vec<_> = (0..3)
            .map(|i| {
                cluster(ClusterSubscribe::Shared)
                    .share(&connect, &subscribe, i, 3)
                    .expect("every process subscribes")
            })
            .collect();
        for (i, share) in shares.iter().enumerate() {
            assert_eq!(
                share.subscribe.topics,
                ["$share/g/a/+", "$share/g/b/+", "$share/g/c/+"]
            );
            assert_eq!(
                share.connect.identity.client_id,
                format!("smartgrid-home-meters-p{i}")
            );
            assert_eq!(share.own_files, i > 0);
        }
    }

    #[test]
    fn topics_are_dealt_out_and_a_process_without_one_stays_out() {
        let (connect, subscribe) = options("mqtt://127.0.0.1:1883");
        let planned = cluster(ClusterSubscribe::Topics);
        let dealt: Vec<Vec<String>> = (0..4)
            .map(|i| {
                planned
                    .share(&connect, &subscribe, i, 4)
                    .map(|s| s.subscribe.topics)
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(dealt, [vec!["a/+"], vec!["b/+"], vec!["c/+"], vec![]]);
        let two: Vec<String> = (0..2)
            .flat_map(|i| {
                planned
                    .share(&connect, &subscribe, i, 2)
                    .expect("share")
                    .subscribe
                    .topics
            })
            .collect();
        assert_eq!(two, ["a/+", "c/+", "b/+"]);
    }

    #[test]
    fn a_single_process_or_an_embedded_broker_subscribes_once_as_before() {
        let (connect, subscribe) = options("mqtt://127.0.0.1:1883");
        let alone = cluster(ClusterSubscribe::Shared)
            .share(&connect, &subscribe, 0, 1)
            .expect("subscribes");
        assert_eq!(alone.subscribe.topics, subscribe.topics);
        assert_eq!(alone.connect.identity.client_id, "smartgrid-home-meters");
        let (connect, subscribe) = options("embedded");
        let planned = cluster(ClusterSubscribe::Shared);
        assert!(planned.share(&connect, &subscribe, 0, 3).is_some());
        assert!(planned.share(&connect, &subscribe, 1, 3).is_none());
        let first = cluster(ClusterSubscribe::First);
        let (connect, subscribe) = options("mqtt://127.0.0.1:1883");
        assert!(first.share(&connect, &subscribe, 0, 2).is_some());
        assert!(first.share(&connect, &subscribe, 1, 2).is_none());
    }
}
