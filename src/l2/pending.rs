//! Buffers for packets that wait while their destination is resolved: one allocation up front, then
//! fixed slots handed out and taken back, so queueing never allocates.

use super::config::{QUEUE_PER_DESTINATION_MAX, QUEUED_PACKET_MAX};

/// A slot number in a [`PacketSlab`].
pub(crate) type Slot = u16;

/// Fixed-size packet buffers, allocated once.
pub(crate) struct PacketSlab {
    // INVARIANT: bytes.len() == lens.len() * QUEUED_PACKET_MAX, and every slot is either in `free` or
    // owned by exactly one queue or ready list.
    bytes: Vec<u8>,
    lens: Vec<u16>,
    free: Vec<Slot>,
}

impl PacketSlab {
    /// `slots` buffers of [`QUEUED_PACKET_MAX`] bytes (at most `u16::MAX` slots).
    pub(crate) fn new(slots: usize) -> PacketSlab {
        let slots = slots.min(usize::from(Slot::MAX));
        PacketSlab {
            bytes: vec![0; slots * QUEUED_PACKET_MAX],
            lens: vec![0; slots],
            // Popped from the end: hand out low slots first.
            free: (0..slots).rev().map(|slot| slot as Slot).collect(),
        }
    }

    /// The number of slots.
    pub(crate) fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// The number of free slots.
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        self.free.len()
    }

    /// Copies `packet` into a free slot; `None` when none is free or the packet does not fit a slot.
    pub(crate) fn store(&mut self, packet: &[u8]) -> Option<Slot> {
        if packet.len() > QUEUED_PACKET_MAX {
            return None;
        }
        let slot = self.free.pop()?;
        let start = usize::from(slot) * QUEUED_PACKET_MAX;
        self.bytes[start..start + packet.len()].copy_from_slice(packet);
        self.lens[usize::from(slot)] = packet.len() as u16;
        Some(slot)
    }

    /// The packet in `slot`.
    pub(crate) fn get(&self, slot: Slot) -> &[u8] {
        let start = usize::from(slot) * QUEUED_PACKET_MAX;
        &self.bytes[start..start + usize::from(self.lens[usize::from(slot)])]
    }

    /// Gives `slot` back.
    pub(crate) fn release(&mut self, slot: Slot) {
        debug_assert!(!self.free.contains(&slot), "slot {slot} released twice");
        self.free.push(slot);
    }
}

/// The slots queued for one destination, oldest first, at most [`QUEUE_PER_DESTINATION_MAX`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SlotQueue {
    slots: [Slot; QUEUE_PER_DESTINATION_MAX],
    len: u8,
}

impl SlotQueue {
    /// Appends `slot`; when `limit` slots are already queued the oldest is removed and returned.
    pub(crate) fn push(&mut self, slot: Slot, limit: usize) -> Option<Slot> {
        let limit = limit.clamp(1, QUEUE_PER_DESTINATION_MAX);
        let mut evicted = None;
        if usize::from(self.len) >= limit {
            evicted = Some(self.slots[0]);
            self.slots.copy_within(1..usize::from(self.len), 0);
            self.len -= 1;
        }
        self.slots[usize::from(self.len)] = slot;
        self.len += 1;
        evicted
    }

    /// The queued slots, oldest first.
    pub(crate) fn as_slice(&self) -> &[Slot] {
        &self.slots[..usize::from(self.len)]
    }

    /// Number of queued slots.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Empties the queue, returning what it held.
    pub(crate) fn take(&mut self) -> SlotQueue {
        core::mem::take(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_bounded() {
        let mut slab = PacketSlab::new(2);
        let a = slab.store(&[1, 2, 3]).unwrap();
        let b = slab.store(&[4]).unwrap();
        assert_eq!(slab.store(&[5]), None, "all slots in use");
        assert_eq!(slab.get(a), &[1, 2, 3]);
        assert_eq!(slab.get(b), &[4]);
        slab.release(a);
        let c = slab.store(&[6, 7]).unwrap();
        assert_eq!(c, a);
        assert_eq!(slab.get(c), &[6, 7]);
        assert_eq!(
            slab.store(&[0; QUEUED_PACKET_MAX + 1]),
            None,
            "too big for a slot"
        );
        assert_eq!(slab.capacity(), 2);
    }

    #[test]
    fn queue_replaces_the_oldest_when_full() {
        let mut queue = SlotQueue::default();
        assert_eq!(queue.push(1, 3), None);
        assert_eq!(queue.push(2, 3), None);
        assert_eq!(queue.push(3, 3), None);
        assert_eq!(queue.push(4, 3), Some(1));
        assert_eq!(queue.as_slice(), &[2, 3, 4]);
        let taken = queue.take();
        assert_eq!(taken.as_slice(), &[2, 3, 4]);
        assert_eq!(queue.len(), 0);
        // A limit above the maximum is clamped.
        for slot in 0..10 {
            queue.push(slot, 100);
        }
        assert_eq!(queue.len(), QUEUE_PER_DESTINATION_MAX);
    }
}
