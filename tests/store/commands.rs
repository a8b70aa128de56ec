//! The command bus over a real store: commands racing on one hot stream are
//! gathered into shared appends, and still each decided on the state the
//! ones before it left, with its own metadata and its own recorded events.

use std::sync::Arc;

use scaidrive::command::{CommandBus, CommandContext};
use scaidrive_domain::{Aggregate, DomainError, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::harness::Harness;

/// A counter that refuses to go past a cap.
#[derive(Debug, Clone, Default)]
struct Tally {
    count: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
enum TallyEvent {
    TallyCounted { n: u32 },
}

impl DomainEvent for TallyEvent {}

impl Aggregate for Tally {
    /// The cap.
    type Command = u32;
    type Event = TallyEvent;

    fn decide(&self, cap: &u32) -> Result<Vec<TallyEvent>, DomainError> {
        if self.count >= *cap {
            return Err(DomainError::LimitReached("the cap is reached".into()));
        }
        Ok(vec![TallyEvent::TallyCounted { n: self.count + 1 }])
    }

    fn evolve(&mut self, event: &TallyEvent) {
        let TallyEvent::TallyCounted { n } = event;
        self.count = *n;
    }
}

fn ctx(user: usize) -> CommandContext {
    let mut ctx = CommandContext::system(Some("tnt_test".into()));
    ctx.actor.user_id = Some(format!("usr_{user}"));
    ctx
}

/// `writers` commands per bus (two buses are two processes on one database)
/// race on one stream capped at `cap`.
async fn race(h: &Harness, buses: usize, writers: usize, cap: u32) {
    let buses: Vec<Arc<CommandBus>> = (0..buses)
        .map(|_| Arc::new(CommandBus::new(h.store.clone(), 100)))
        .collect();
    let mut tasks = Vec::new();
    for (b, bus) in buses.iter().enumerate() {
        for w in 0..writers {
            let bus = bus.clone();
            let user = b * writers + w;
            tasks.push(tokio::spawn(async move {
                let ctx = ctx(user);
                let r = bus
                    .execute::<Tally, _>("tally-1", &ctx, |t| t.state.decide(&cap))
                    .await;
                (user, r)
            }));
        }
    }
    let mut allowed = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (user, r) = t.await.expect("task");
        match r {
            Ok((state, committed)) => {
                assert_eq!(committed.events.len(), 1, "one event per command");
                let e = &committed.events[0];
                assert_eq!(
                    e.metadata.actor.user_id.as_deref(),
                    Some(format!("usr_{user}").as_str()),
                    "each command's event carries its own metadata"
                );
                assert_eq!(committed.position, Some(e.log));
                let TallyEvent::TallyCounted { n } = e.decode::<TallyEvent>().expect("decode");
                assert_eq!(
                    i64::from(n),
                    e.stream_version,
                    "decided on the state before it"
                );
                assert!(state.count >= n);
                allowed.push(e.stream_version);
            }
            Err(scaidrive::command::CommandError::Domain(DomainError::LimitReached(_))) => {
                refused += 1
            }
            Err(e) => panic!("unexpected failure: {e}"),
        }
    }
    allowed.sort_unstable();
    let total = buses.len() * writers;
    let expected = (cap as usize).min(total);
    assert_eq!(
        allowed,
        (1..=expected as i64).collect::<Vec<_>>(),
        "exactly the cap, every version once"
    );
    assert_eq!(
        refused,
        total - expected,
        "a refusal never sinks the others"
    );
    let stored = h
        .store
        .read_stream("tally-1", 0, 10_000)
        .await
        .expect("read");
    assert_eq!(stored.len(), expected);
}

pub async fn hot_stream_commands_share_appends_and_keep_caps(h: &Harness) {
    race(h, 1, 64, 40).await;
}

pub async fn hot_stream_commands_of_two_processes_keep_caps(h: &Harness) {
    race(h, 2, 32, 40).await;
}
