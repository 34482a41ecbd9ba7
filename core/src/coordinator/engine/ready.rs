//! The two sides dispatch matches: ready tasks grouped by what they need
//! of a worker ([`Need`]), and idle workers grouped by what they offer
//! ([`Caps`]).
//!
//! Grouping is what keeps tasks that cannot run now from standing in front
//! of tasks that can: a group no idle worker serves is skipped as a whole
//! (one comparison of a need with each distinct kind of idle worker), so a
//! million tasks for a tier nobody has cost dispatch nothing. Within a
//! group, replicas must go to distinct workers (and origins); the queue
//! counts, per group and per worker or origin, the tasks that exclude it,
//! so whether a worker can take *any* task of a group is known without
//! walking the group, and a walk happens only when it will find one.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::coordinator::config::CoordinatorConfig;
use crate::coordinator::profile::{Tier, WorkerClass};
use crate::kernels::{Comparator, KernelId};

use crate::wire::message::DeviceInfo;

use super::registry::{WorkerIdx, WorkerNum};
use super::tasks::{Task, TaskKey};
use super::types::OriginKey;
use super::Map;

/// A ready task's place in its group: higher priority first, then
/// submission order.
pub(super) type ReadyKey = (Reverse<u8>, TaskKey);

/// What a task needs of a worker while it waits. Tasks with equal needs
/// form one group of the ready queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Need {
    /// The kernel the worker must support.
    pub(super) kernel: KernelId,
    /// The lowest tier allowed.
    pub(super) min_tier: Tier,
    /// Log2 of the task's working set rounded up to a power of two (so
    /// tasks of nearly equal size share a group; see [`Caps::mem_log2`]).
    pub(super) mem_log2: u8,
    /// The class a float task's replicas are bound to once one was given
    /// out (homogeneous redundancy); `None` for any class.
    pub(super) class: Option<WorkerClass>,
}

/// What an idle worker offers, quantised as [`Need`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Caps {
    pub(super) class: WorkerClass,
    /// Bit `i` set: supports `KernelId::ALL[i]`.
    pub(super) kernels: u8,
    /// Log2 of its largest buffer rounded down: a worker is given tasks
    /// whose working set, rounded up to a power of two, fits (at worst half
    /// its memory is left unused by a task that would just have fitted).
    pub(super) mem_log2: u8,
}

/// The bit of a kernel in [`Caps::kernels`].
pub(super) fn kernel_bit(k: KernelId) -> u8 {
    let i = KernelId::ALL.iter().position(|&x| x == k).unwrap_or(0);
    1 << i
}

/// Log2 of `bytes` rounded up to a power of two.
pub(super) fn log2_ceil(bytes: u64) -> u8 {
    if bytes <= 1 {
        0
    } else {
        (64 - (bytes - 1).leading_zeros()) as u8
    }
}

/// Log2 of `bytes` rounded down (0 for 0 and 1).
pub(super) fn log2_floor(bytes: u64) -> u8 {
    bytes.checked_ilog2().unwrap_or(0) as u8
}

impl Need {
    /// In words, for operators.
    pub(super) fn describe(&self) -> String {
        let class = match self.class {
            Some(c) => format!(", on {:?} tier {} like its other replicas", c.backend, c.tier as u8),
            None => String::new(),
        };
        format!(
            "the {} kernel, tier {} or better, {} MiB of buffers{class}",
            self.kernel,
            self.min_tier as u8,
            (1u128 << self.mem_log2).div_ceil(1 << 20)
        )
    }

    /// What `t` needs now.
    pub(super) fn of(t: &Task, cfg: &CoordinatorConfig) -> Need {
        let float = !matches!(t.spec.comparator(), Comparator::Exact);
        Need {
            kernel: t.spec.id(),
            min_tier: t.min_tier,
            mem_log2: log2_ceil(t.working_set),
            class: if float && cfg.homogeneous_floats { t.class } else { None },
        }
    }
}

impl Caps {
    /// What a worker of this class and device offers.
    pub(super) fn of(class: WorkerClass, device: &DeviceInfo) -> Caps {
        let kernels = device.kernels.iter().fold(0, |bits, &k| bits | kernel_bit(k));
        Caps { class, kernels, mem_log2: log2_floor(device.max_buffer_bytes) }
    }

    /// Whether a worker with these capabilities may run a task with this need
    /// (ignoring which workers already tried the task).
    pub(super) fn serves(&self, need: &Need) -> bool {
        self.class.tier >= need.min_tier
            && self.kernels & kernel_bit(need.kernel) != 0
            && self.mem_log2 >= need.mem_log2
            && need.class.is_none_or(|c| c == self.class)
    }
}

/// Who a task was given to, as the queue counts it: per origin when
/// replicas need distinct origins (a worker that never roamed ran tasks
/// only from its origin, so the origin's count is exactly the tasks that
/// exclude it), per worker otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Excl {
    Worker(WorkerNum),
    Origin(OriginKey),
}

impl Excl {
    /// The key of one `tried` entry.
    fn of(&(num, origin): &(WorkerNum, OriginKey), origins: bool) -> Excl {
        if origins {
            Excl::Origin(origin)
        } else {
            Excl::Worker(num)
        }
    }
}

/// One group's tasks, and its first key (kept at hand: most inserts
/// append behind it and most removals take it).
#[derive(Debug)]
struct Group {
    tasks: BTreeSet<ReadyKey>,
    head: ReadyKey,
}

/// Ready tasks grouped by [`Need`], each group in [`ReadyKey`] order.
#[derive(Debug, Default)]
pub(super) struct ReadyQueue {
    groups: BTreeMap<Need, Group>,
    /// Each non-empty group's first key: the groups in the order their best
    /// task should be served.
    heads: BTreeSet<(ReadyKey, Need)>,
    /// Tasks of a group that exclude a worker, an origin or a pair (absent: 0).
    excluded: Map<(Need, Excl), u32>,
    len: usize,
}

/// The distinct exclusion keys of a task's `tried` list.
fn excl_keys(tried: &[(WorkerNum, OriginKey)], origins: bool) -> impl Iterator<Item = Excl> + '_ {
    tried.iter().enumerate().filter_map(move |(i, entry)| {
        let key = Excl::of(entry, origins);
        (!tried[..i].iter().any(|e| Excl::of(e, origins) == key)).then_some(key)
    })
}

impl ReadyQueue {
    /// Queues a task in the group of its need, or moves it there (a task
    /// may be pushed again whenever it needs more replicas).
    pub(super) fn push(&mut self, t: &mut Task, cfg: &CoordinatorConfig) {
        let need = Need::of(t, cfg);
        match t.queued {
            Some(old) if old == need => return,
            Some(_) => self.take(t, cfg.distinct_origins),
            None => {}
        }
        self.insert(need, t.ready_key(), &t.tried, cfg.distinct_origins);
        t.queued = Some(need);
    }

    /// Records that a queued task, staying in its group, was given to one
    /// more worker (`tried` as it was before).
    pub(super) fn note_tried(
        &mut self,
        need: Need,
        tried: &[(WorkerNum, OriginKey)],
        entry: (WorkerNum, OriginKey),
        origins: bool,
    ) {
        let key = Excl::of(&entry, origins);
        if !tried.iter().any(|e| Excl::of(e, origins) == key) {
            *self.excluded.entry((need, key)).or_insert(0) += 1;
        }
    }

    /// Takes a task out of the queue (before its `tried` list or class
    /// changes, or when it needs no more workers).
    pub(super) fn take(&mut self, t: &mut Task, origins: bool) {
        if let Some(need) = t.queued.take() {
            self.remove(need, t.ready_key(), &t.tried, origins);
        }
    }

    /// Queues a task (no effect if it is already in that group).
    pub(super) fn insert(&mut self, need: Need, key: ReadyKey, tried: &[(WorkerNum, OriginKey)], origins: bool) {
        match self.groups.get_mut(&need) {
            Some(group) => {
                if !group.tasks.insert(key) {
                    return;
                }
                if key < group.head {
                    self.heads.remove(&(group.head, need));
                    self.heads.insert((key, need));
                    group.head = key;
                }
            }
            None => {
                self.groups.insert(need, Group { tasks: BTreeSet::from([key]), head: key });
                self.heads.insert((key, need));
            }
        }
        self.len += 1;
        for e in excl_keys(tried, origins) {
            *self.excluded.entry((need, e)).or_insert(0) += 1;
        }
    }

    /// Takes a task out of its group (no effect if it is not there).
    pub(super) fn remove(&mut self, need: Need, key: ReadyKey, tried: &[(WorkerNum, OriginKey)], origins: bool) {
        let Some(group) = self.groups.get_mut(&need) else { return };
        if !group.tasks.remove(&key) {
            return;
        }
        self.len -= 1;
        if group.head == key {
            self.heads.remove(&(key, need));
            match group.tasks.first() {
                Some(&h) => {
                    group.head = h;
                    self.heads.insert((h, need));
                }
                None => {
                    self.groups.remove(&need);
                }
            }
        }
        for e in excl_keys(tried, origins) {
            if let Some(n) = self.excluded.get_mut(&(need, e)) {
                *n -= 1;
                if *n == 0 {
                    self.excluded.remove(&(need, e));
                }
            }
        }
    }

    /// Tasks queued in all.
    #[cfg(any(test, feature = "sim"))]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The groups, best head first.
    pub(super) fn heads(&self) -> impl Iterator<Item = Need> + '_ {
        self.heads.iter().map(|&(_, n)| n)
    }

    /// A group's tasks in order.
    pub(super) fn group(&self, need: Need) -> impl Iterator<Item = TaskKey> + '_ {
        self.groups.get(&need).into_iter().flat_map(|g| &g.tasks).map(|&(_, k)| k)
    }

    /// Tasks in a group.
    pub(super) fn group_len(&self, need: Need) -> usize {
        self.groups.get(&need).map_or(0, |g| g.tasks.len())
    }

    /// Tasks of a group that exclude `e`.
    pub(super) fn excluding(&self, need: Need, e: Excl) -> usize {
        self.excluded.get(&(need, e)).map_or(0, |&n| n as usize)
    }
}

/// Active workers with room, grouped by [`Caps`], each group by load.
#[derive(Debug, Default)]
pub(super) struct IdlePool {
    by_caps: BTreeMap<Caps, BTreeSet<(u32, WorkerIdx)>>,
    len: usize,
}

impl IdlePool {
    pub(super) fn insert(&mut self, caps: Caps, load: u32, w: WorkerIdx) {
        if self.by_caps.entry(caps).or_default().insert((load, w)) {
            self.len += 1;
        }
    }

    pub(super) fn remove(&mut self, caps: Caps, load: u32, w: WorkerIdx) {
        let Some(set) = self.by_caps.get_mut(&caps) else { return };
        if set.remove(&(load, w)) {
            self.len -= 1;
            if set.is_empty() {
                self.by_caps.remove(&caps);
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kinds of idle workers that serve `need`, each with its workers,
    /// least loaded first.
    pub(super) fn serving(&self, need: Need) -> impl Iterator<Item = &BTreeSet<(u32, WorkerIdx)>> + '_ {
        self.by_caps.iter().filter(move |(c, _)| c.serves(&need)).map(|(_, set)| set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_round_the_right_way() {
        assert_eq!((log2_ceil(0), log2_ceil(1), log2_ceil(2), log2_ceil(3), log2_ceil(1024)), (0, 0, 1, 2, 10));
        assert_eq!(log2_ceil(1025), 11);
        assert_eq!(
            (log2_floor(0), log2_floor(1), log2_floor(3), log2_floor(1024), log2_floor(2047)),
            (0, 0, 1, 10, 10)
        );
        assert_eq!(log2_ceil(u64::MAX), 64);
    }

    #[test]
    fn exclusions_are_counted_once_per_task_and_heads_follow_the_best_task() {
        let need = Need { kernel: KernelId::Sha256, min_tier: Tier::Low, mem_log2: 10, class: None };
        let (o1, o2) = (OriginKey(1), OriginKey(2));
        let tried = [(WorkerNum(1), o1), (WorkerNum(2), o1)];
        let mut q = ReadyQueue::default();
        q.insert(need, (Reverse(0), TaskKey(5)), &tried, true);
        q.insert(need, (Reverse(0), TaskKey(5)), &tried, true); // again: no effect
        q.insert(need, (Reverse(1), TaskKey(9)), &[(WorkerNum(3), o2)], true);
        assert_eq!(q.len(), 2);
        assert_eq!(q.group(need).collect::<Vec<_>>(), [TaskKey(9), TaskKey(5)]);
        assert_eq!(q.excluding(need, Excl::Origin(o1)), 1, "two workers of one origin count once");
        assert_eq!(q.excluding(need, Excl::Origin(o2)), 1);
        assert_eq!(q.excluding(need, Excl::Worker(WorkerNum(2))), 0, "origins are counted, not workers");
        q.remove(need, (Reverse(1), TaskKey(9)), &[(WorkerNum(3), o2)], true);
        assert_eq!(q.heads.first(), Some(&((Reverse(0), TaskKey(5)), need)));
        q.remove(need, (Reverse(0), TaskKey(5)), &tried, true);
        assert_eq!((q.len(), q.heads.len(), q.groups.len(), q.excluded.len()), (0, 0, 0, 0));
    }
}
