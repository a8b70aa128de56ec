//! The decide/evolve shape every aggregate follows, and a given/when/then
//! harness to test aggregates in events without a database.

use crate::error::DomainError;
use crate::event::DomainEvent;

/// A consistency boundary: one event stream, one state folded from it.
///
/// `decide` and `evolve` are pure: time, ids and any outside facts arrive in
/// the command.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    type Command;
    type Event: DomainEvent;

    /// Checks a command against the current state and answers with the events
    /// it causes (possibly none, for an idempotent no-op).
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, DomainError>;

    /// Applies one event to the state.
    fn evolve(&mut self, event: &Self::Event);

    /// Folds a history into a state.
    fn replay<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        let mut state = Self::default();
        for e in events {
            state.evolve(e);
        }
        state
    }
}

/// Given these events, when this command, then these events (or this error).
pub struct Scenario<A: Aggregate> {
    state: A,
}

impl<A: Aggregate> Scenario<A> {
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let mut state = A::default();
        for e in events {
            state.evolve(&e);
        }
        Self { state }
    }

    pub fn given_nothing() -> Self {
        Self {
            state: A::default(),
        }
    }

    pub fn when(self, command: A::Command) -> Outcome<A> {
        let result = self.state.decide(&command);
        Outcome {
            state: self.state,
            result,
        }
    }
}

/// What `when` produced; assert on it with `then` or `then_error`.
pub struct Outcome<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, DomainError>,
}

impl<A: Aggregate> Outcome<A> {
    /// Asserts the exact events (compared by their serialised form).
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<_> = expected.into_iter().map(|e| e.encode()).collect();
        match self.result {
            Ok(events) => {
                let got: Vec<_> = events.iter().map(|e| e.encode()).collect();
                assert_eq!(got, expected, "unexpected events");
                let mut state = self.state;
                for e in &events {
                    state.evolve(e);
                }
                state
            }
            Err(e) => panic!("expected events {expected:?}, got error {e:?}"),
        }
    }

    /// Asserts the event type names only.
    #[track_caller]
    pub fn then_types(self, expected: &[&str]) -> Vec<A::Event> {
        match self.result {
            Ok(events) => {
                let got: Vec<String> = events.iter().map(|e| e.event_type()).collect();
                assert_eq!(got, expected, "unexpected event types");
                events
            }
            Err(e) => panic!("expected events {expected:?}, got error {e:?}"),
        }
    }

    /// Asserts the command was refused with this error.
    #[track_caller]
    pub fn then_error(self, expected: DomainError) {
        match self.result {
            Ok(events) => panic!("expected error {expected:?}, got events {events:?}"),
            Err(e) => assert_eq!(e, expected),
        }
    }

    /// Asserts the command was refused, with an error the predicate accepts.
    #[track_caller]
    pub fn then_error_matches(self, pred: impl FnOnce(&DomainError) -> bool) {
        match self.result {
            Ok(events) => panic!("expected an error, got events {events:?}"),
            Err(e) => assert!(pred(&e), "unexpected error {e:?}"),
        }
    }
}
