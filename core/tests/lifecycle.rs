//! Task lifecycle, timeouts, durations and the result-file policy through
//! the public API, on a fake clock. Runs natively and on wasm32.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use shoal_core::score::polo_score;
use shoal_core::task::{
    check_result_filename, Durations, ResultFileError, TaskLifecycle, TaskStatus, Timeout, TransitionError,
    ACCEPT_TIMEOUT, QUEUE_HEAD_TIMEOUT,
};
use shoal_core::Millis;

const T0: Millis = Millis(1_700_000_000_000);

fn at(ms: u64) -> Millis {
    Millis(T0.0 + ms)
}

#[test]
fn happy_path_stamps_and_durations_come_from_the_coordinator_clock() {
    let mut t = TaskLifecycle::new(T0);
    t.accept(at(5_000)).expect("NEW → ACCEPTED");
    t.stage(at(6_000)).expect("staged");
    t.stage(at(7_000)).expect("second stamp ignored");
    t.start(at(9_000)).expect("ACCEPTED → EXECUTING");
    t.complete(at(129_000)).expect("EXECUTING → COMPLETED");
    t.succeed(at(130_000)).expect("COMPLETED → SUCCEEDED");
    assert_eq!(t.status(), TaskStatus::Succeeded);
    assert_eq!(t.durations(), Durations { idle_ms: 5_000, staged_ms: 3_000, cpu_ms: 120_000 });
    let d = t.durations();
    // 5 s idle (0.025), 3 s staged (0.0015), 2 min cpu (log2 3) → 2.51… → 3
    assert_eq!(polo_score(d.idle_ms, d.staged_ms, d.cpu_ms).reward, 3);
}

#[test]
fn illegal_transitions_are_refused_and_change_nothing() {
    let mut t = TaskLifecycle::new(T0);
    assert_eq!(t.start(at(1)), Err(TransitionError::Illegal { from: TaskStatus::New, to: TaskStatus::Executing }));
    assert_eq!(t.succeed(at(1)), Err(TransitionError::Illegal { from: TaskStatus::New, to: TaskStatus::Succeeded }));
    assert_eq!(t.stage(at(1)), Err(TransitionError::NotStageable(TaskStatus::New)));
    t.decline(at(2_000), "no GPU").expect("NEW → DECLINED");
    assert_eq!(t.justification(), "no GPU");
    for s in [t.accept(at(3)), t.cancel(at(3), "x"), t.complete(at(3))] {
        assert!(matches!(s, Err(TransitionError::Illegal { from: TaskStatus::Declined, .. })));
    }
    assert_eq!(t.durations().idle_ms, 2_000);
    assert!(matches!(
        TaskLifecycle::new(T0).decline(T0, &"x".repeat(5_000)),
        Err(TransitionError::JustificationTooLong(5_000))
    ));
}

#[test]
fn the_transition_table_is_closed_over_terminal_states() {
    for from in TaskStatus::ALL {
        for to in TaskStatus::ALL {
            if from.is_terminal() {
                assert!(!from.can_become(to), "{from} is terminal but may become {to}");
            }
            assert!(!(from.can_become(to) && to == TaskStatus::New), "nothing returns to NEW");
        }
    }
}

#[test]
fn accept_timeout_cancels_a_silent_task() {
    let mut t = TaskLifecycle::new(T0);
    assert_eq!(t.next_deadline(), Some(at(ACCEPT_TIMEOUT.0 + 1)));
    assert_eq!(t.due_timeout(at(30_000)), None);
    assert_eq!(t.due_timeout(at(60_000)), None, "exactly one minute is still in time");
    assert_eq!(t.due_timeout(at(120_000)), Some(Timeout::Accept));
    let mut late = t.clone();
    assert_eq!(late.accept(at(120_000)), Err(TransitionError::AcceptWindowClosed));
    assert_eq!(t.expire_if_due(at(120_000)), Some(Timeout::Accept));
    assert_eq!(t.status(), TaskStatus::Cancelled);
    assert_eq!(t.justification(), "Task cancelled: no response within 1 minute");
    assert_eq!(t.durations().idle_ms, 120_000);
    assert_eq!(t.expire_if_due(at(999_999)), None, "terminal tasks never time out");
}

#[test]
fn queue_head_timeout_expires_after_an_hour() {
    let mut t = TaskLifecycle::new(T0);
    t.accept(at(1_000)).expect("accepted");
    t.stage(at(2_000)).expect("staged");
    assert_eq!(t.due_timeout(at(2_000 + 30 * 60_000)), None);
    assert_eq!(t.next_deadline(), Some(at(2_000 + QUEUE_HEAD_TIMEOUT.0 + 1)));
    assert_eq!(t.expire_if_due(at(2_000 + 2 * 3_600_000)), Some(Timeout::QueueHead));
    assert_eq!(t.status(), TaskStatus::Expired);
    assert_eq!(t.durations().staged_ms, 2 * 3_600_000);
}

#[test]
fn accepted_stall_expires_after_a_minute() {
    let mut t = TaskLifecycle::new(T0);
    t.accept(at(1_000)).expect("accepted");
    assert_eq!(t.due_timeout(at(61_000)), None);
    assert_eq!(t.due_timeout(at(61_001)), Some(Timeout::AcceptedStall));
    assert_eq!(t.expire_if_due(at(90_000)), Some(Timeout::AcceptedStall));
    assert_eq!(t.status(), TaskStatus::Expired);
}

#[test]
fn a_clock_stepping_back_yields_zero_durations_not_panics() {
    let mut t = TaskLifecycle::new(at(10_000));
    t.accept(at(5_000)).expect("accepted");
    t.start(at(4_000)).expect("started");
    t.complete(at(3_000)).expect("completed");
    assert_eq!(t.durations(), Durations::default());
}

#[test]
fn result_file_policy() {
    for ok in ["report.md", "weights.SAFETENSORS", "img.PNG", "data.parquet", "a.b.csv"] {
        assert_eq!(check_result_filename(ok), Ok(()), "{ok}");
    }
    assert_eq!(check_result_filename("x.rs"), Err(ResultFileError::SourceCode("rs".into())));
    assert_eq!(check_result_filename("x.R"), Err(ResultFileError::SourceCode("r".into())));
    assert_eq!(check_result_filename("x.exe"), Err(ResultFileError::ExtensionNotAllowed("exe".into())));
    assert_eq!(check_result_filename("README"), Err(ResultFileError::NoExtension("README".into())));
    assert_eq!(check_result_filename(""), Err(ResultFileError::Empty));
    for bad in ["../etc/passwd.txt", "a/b.txt", "a\\b.txt", "..txt", "a\u{0}.txt", "a\n.txt"] {
        assert!(matches!(check_result_filename(bad), Err(ResultFileError::NotPlain(_))), "{bad:?}");
    }
    let long = format!("{}.txt", "a".repeat(253));
    assert_eq!(check_result_filename(&long), Err(ResultFileError::TooLong(257)));
}
