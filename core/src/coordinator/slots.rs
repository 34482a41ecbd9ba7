//! The assignments in flight, in a slab whose slot number is written into
//! each assignment's id.
//!
//! Every acknowledgement and result looks its assignment up. In a hash map
//! keyed by random ids each lookup lands on a random, usually cold, cache
//! line; here the id names its slot (one indexed load), and a freed slot is
//! the next one reused, so the slots in use stay few and warm. The rest of
//! the id stays random: an id from before a slot was reused, or one a peer
//! made up, does not match the slot's id and is simply unknown.

use crate::ids::AssignmentId;

/// Slot number of an id: its first four bytes.
fn slot_of(id: &AssignmentId) -> usize {
    let b = id.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

struct Slot<T> {
    id: AssignmentId,
    value: Option<T>,
}

/// Values keyed by the assignment ids this table hands out.
pub(crate) struct Slots<T> {
    table: Vec<Slot<T>>,
    /// Empty slots, the most recently emptied last.
    free: Vec<u32>,
    len: usize,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Slots<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.table.iter().filter_map(|s| s.value.as_ref().map(|v| (s.id, v)))).finish()
    }
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { table: Vec::new(), free: Vec::new(), len: 0 }
    }
}

impl<T> Slots<T> {
    /// Stores `value` under a new id made of a free slot's number and the
    /// rest of `random`.
    pub(crate) fn insert(&mut self, random: [u8; 16], value: T) -> AssignmentId {
        let slot = match self.free.pop() {
            Some(s) => s as usize,
            None => {
                self.table.push(Slot { id: AssignmentId::from_bytes([0; 16]), value: None });
                self.table.len() - 1
            }
        };
        let mut bytes = random;
        bytes[..4].copy_from_slice(&(slot as u32).to_le_bytes());
        let id = AssignmentId::from_bytes(bytes);
        self.table[slot] = Slot { id, value: Some(value) };
        self.len += 1;
        id
    }

    /// The value of `id`, if it is in the table.
    pub(crate) fn get(&self, id: &AssignmentId) -> Option<&T> {
        self.table.get(slot_of(id)).filter(|s| s.id == *id).and_then(|s| s.value.as_ref())
    }

    /// The value of `id`, mutably, if it is in the table.
    pub(crate) fn get_mut(&mut self, id: &AssignmentId) -> Option<&mut T> {
        self.table.get_mut(slot_of(id)).filter(|s| s.id == *id).and_then(|s| s.value.as_mut())
    }

    /// Takes the value of `id` out; its slot is the next one reused.
    pub(crate) fn remove(&mut self, id: &AssignmentId) -> Option<T> {
        let slot = slot_of(id);
        let s = self.table.get_mut(slot).filter(|s| s.id == *id)?;
        let value = s.value.take()?;
        self.free.push(slot as u32);
        self.len -= 1;
        Some(value)
    }

    /// Values in the table.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_find_their_values_and_stale_or_made_up_ids_find_nothing() {
        let mut t = Slots::default();
        let a = t.insert([7; 16], "a");
        let b = t.insert([8; 16], "b");
        assert_ne!(a, b);
        assert_eq!(t.get(&a), Some(&"a"));
        assert_eq!(t.remove(&a), Some("a"));
        assert_eq!(t.get(&a), None);
        assert_eq!(t.remove(&a), None, "removing twice finds nothing");
        // The slot is reused under a different id; the old id stays unknown.
        let c = t.insert([9; 16], "c");
        assert_eq!(slot_of(&c), slot_of(&a));
        assert_eq!(t.get(&a), None);
        assert_eq!(t.get(&c), Some(&"c"));
        if let Some(v) = t.get_mut(&b) {
            *v = "B";
        }
        assert_eq!(t.get(&b), Some(&"B"));
        // Made-up ids: a slot out of range, or the right slot with other bytes.
        assert_eq!(t.get(&AssignmentId::from_bytes([0xff; 16])), None);
        let mut forged = *c.as_bytes();
        forged[15] ^= 1;
        assert_eq!(t.get(&AssignmentId::from_bytes(forged)), None);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn slots_in_use_stay_as_few_as_the_values_held() {
        let mut t = Slots::default();
        let mut live = std::collections::VecDeque::new();
        for i in 0..10_000u32 {
            let mut r = [0u8; 16];
            r[4..8].copy_from_slice(&i.to_le_bytes());
            live.push_back(t.insert(r, i));
            if live.len() > 64 {
                let id = live.pop_front().expect("held");
                assert!(t.remove(&id).is_some());
            }
        }
        assert_eq!(t.len(), 64);
        assert!(t.table.len() <= 65, "{} slots for 64 values", t.table.len());
    }
}
