//! Storage round trips: commits survive a reopen, big values live in the
//! blob file, deletes (prefix ones too) remove what they name and free it.

use super::*;
use shoal_core::coordinator::ledger::Ledger;

#[test]
fn commits_survive_reopen_and_old_diffs_are_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let mut ledger = Ledger::default();
    let mut diffs = Vec::new();
    for h in 1..=2500u64 {
        ledger.put("note", Vec::new(), h.to_be_bytes().to_vec());
        diffs.push(ledger.seal().expect("diff"));
    }
    {
        let s = RedbStore::open(&path).expect("open");
        for chunk in diffs.chunks(100) {
            s.commit(&Commit { diffs: chunk, clock: Millis(42), retain: 1000, ..Commit::default() }).expect("commit");
        }
    }
    let s = RedbStore::open(&path).expect("reopen");
    assert_eq!(s.diff_heights().expect("heights"), (1000, 2500), "pruned below 2000 − 1000 at height 2000");
    let d = s.diffs(2400, 2402, 10).expect("range");
    assert_eq!(d.iter().map(|d| d.height).collect::<Vec<_>>(), vec![2400, 2401, 2402]);
    assert!(d[1].verify(&d[0].digest));
    let (snap, clock) = s.recover().expect("recover");
    assert_eq!(clock, Millis(42));
    assert_eq!(snap.ledger_height, 2500);
    assert_eq!(snap.ledger_digest, diffs[2499].digest);
}

/// Commits each diff in its own transaction, closes the store and
/// opens it again.
fn commit_each_and_reopen(path: &Path, diffs: &[&StateDiff]) -> RedbStore {
    {
        let s = RedbStore::open(path).expect("open");
        for d in diffs {
            s.commit(&Commit { diffs: std::slice::from_ref(*d), clock: Millis(1), ..Commit::default() })
                .expect("commit");
        }
    }
    RedbStore::open(path).expect("reopen")
}

#[test]
fn big_values_live_in_the_blob_file_and_read_back_in_key_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let big = |b: u8| vec![b; BLOB_MIN + 7];
    let mut ledger = Ledger::default();
    ledger.put("note", b"a".to_vec(), b"small a".to_vec());
    ledger.put("note", b"b".to_vec(), big(1));
    ledger.put("note", b"c".to_vec(), b"small c".to_vec());
    ledger.put("note", b"d".to_vec(), big(2));
    let first = ledger.seal().expect("diff");
    // Later: `b` becomes small, `c` becomes big.
    ledger.put("note", b"b".to_vec(), b"small b".to_vec());
    ledger.put("note", b"c".to_vec(), big(3));
    let second = ledger.seal().expect("diff");
    let s = commit_each_and_reopen(&path, &[&first, &second]);
    let mut seen = Vec::new();
    s.scan("note", &[], |k, v| {
        seen.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })
    .expect("scan");
    let want: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"a".to_vec(), b"small a".to_vec()),
        (b"b".to_vec(), b"small b".to_vec()),
        (b"c".to_vec(), big(3)),
        (b"d".to_vec(), big(2)),
    ];
    assert_eq!(seen, want);
    // The latest diff comes back whole and still verifies. (Values of
    // OUT_OF_LINE bytes or more are write-once in the coordinator: an
    // older diff is re-hydrated from the latest value, so this test's
    // overwrite of `b` is not checked against the first diff.)
    let d = s.diffs(2, 2, 10).expect("diffs");
    assert_eq!(d[0].entries[1].value, big(3));
    assert!(d[0].verify(&first.digest));
    assert_eq!(d[0].digest, second.digest);
    // The blob file holds the three big values, appended once each.
    let blobs = std::fs::metadata(path.with_extension("blobs")).expect("blob file").len();
    assert_eq!(blobs, 3 * s.blobs.footprint(BLOB_MIN as u64 + 7));
}

#[test]
fn inputs_under_their_digest_are_written_once_and_come_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let parts = vec![bytes::Bytes::from(vec![5u8; BLOB_MIN]), bytes::Bytes::from_static(b"tail")];
    let digest = shoal_core::Digest::of_parts(parts.iter().map(|b| &b[..]));
    let mut ledger = Ledger::default();
    ledger.put_inputs(digest, parts.clone());
    let first = ledger.seal().expect("diff");
    // The same inputs again (another job): nothing more on disk.
    ledger.put_inputs(digest, parts.clone());
    let second = ledger.seal().expect("diff");
    let s = commit_each_and_reopen(&path, &[&first, &second]);
    let blobs = std::fs::metadata(path.with_extension("blobs")).expect("blob file").len();
    assert_eq!(blobs, s.blobs.footprint((8 + BLOB_MIN + 8 + 4) as u64), "length-prefixed parts, once");
    let d = s.diffs(1, 2, 10).expect("diffs");
    assert!(d[0].verify(&shoal_core::Digest::default()) && d[1].verify(&first.digest));
    let mut snap = Snapshot::default();
    s.scan(ns::INPUT, &[], |k, v| snap.apply(ns::INPUT, k, v).map(|()| true).map_err(|e| corrupt("input", e)))
        .expect("scan");
    assert_eq!(snap.inputs.get(&digest), Some(&parts));
}

#[test]
fn a_prefix_delete_removes_every_key_under_it_and_frees_big_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let mut ledger = Ledger::default();
    for i in 0..4u8 {
        ledger.put("task", vec![1, 1, i], vec![i; BLOB_MIN + 100]);
        ledger.put("task", vec![1, 2, i], vec![i; 10]);
    }
    let first = ledger.seal().expect("diff");
    ledger.delete_prefix("task", vec![1, 1]);
    let second = ledger.seal().expect("diff");
    let s = commit_each_and_reopen(&path, &[&first]);
    let before = s.blob_bytes();
    s.commit(&Commit { diffs: std::slice::from_ref(&second), clock: Millis(2), ..Commit::default() }).expect("commit");
    let mut left = Vec::new();
    s.scan("task", &[], |k, _| {
        left.push(k.to_vec());
        Ok(true)
    })
    .expect("scan");
    assert_eq!(left, (0..4u8).map(|i| vec![1, 2, i]).collect::<Vec<_>>(), "only the other prefix is left");
    // Only the file system blocks wholly inside a value can be punched out:
    // at least all but the two a value may share with its neighbours.
    let punchable = 4 * (BLOB_MIN as u64 - 2 * 4096);
    assert!(s.blob_bytes() + punchable <= before, "{before} then {}", s.blob_bytes());
    let d = s.diffs(2, 2, 1).expect("diffs");
    assert!(d[0].verify(&first.digest), "the prefix delete is logged as written");
}

#[test]
fn prefix_end_bounds_every_extension() {
    assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
    assert_eq!(prefix_end(&[1, 0xFF]), vec![2]);
}
