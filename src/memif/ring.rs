//! One ring in shared memory: its header (cookie, flags, head, tail) and its descriptors.
//!
//! Layout (x86_64, cache line pinned to 64 bytes as VPP and libmemif do): cookie `u32` at 0, flags `u16`
//! at 4, head `u16` at 6, tail `u16` at 64, then `2^log2` descriptors of 16 bytes from offset 128. head
//! is always written by the client, tail always by the server. A [`Ring`] is checked once, at
//! construction, to lie wholly inside its region; its accessors then cannot leave it.

use std::sync::Arc;
use std::sync::atomic::AtomicU16;

use super::region::Region;

/// The value every ring header starts with.
pub const COOKIE: u32 = 0x03E3_1F20;
/// Cache-line size the layout assumes (tail sits one line after the start, descriptors two).
pub const CACHELINE: usize = 64;
/// Bytes before the first descriptor.
pub const HEADER_SIZE: usize = 2 * CACHELINE;
/// Size of one descriptor.
pub const DESC_SIZE: usize = 16;
/// Largest ring the protocol allows: 2^14 slots, so u16 counters wrap safely.
pub const MAX_LOG2_RING_SIZE: u8 = 14;

/// Ring flag bit 0: the consumer polls; the producer must not signal the eventfd.
pub const RING_FLAG_MASK_INT: u16 = 1;
/// Descriptor flag bit 0: the packet continues in the next slot.
pub const DESC_FLAG_NEXT: u16 = 1;

const OFF_COOKIE: usize = 0;
const OFF_FLAGS: usize = 4;
const OFF_HEAD: usize = 6;
const OFF_TAIL: usize = CACHELINE;

/// Bytes one ring of `2^log2` slots occupies.
pub const fn ring_bytes(log2: u8) -> usize {
    HEADER_SIZE + DESC_SIZE * (1usize << log2)
}

/// A descriptor, copied out of (or into) shared memory as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    pub flags: u16,
    pub region: u16,
    /// Capacity when posted empty, bytes used when filled.
    pub length: u32,
    /// Offset of the data from the start of the region.
    pub offset: u32,
}

impl Desc {
    fn from_bytes(b: [u8; DESC_SIZE]) -> Desc {
        Desc {
            flags: u16::from_ne_bytes([b[0], b[1]]),
            region: u16::from_ne_bytes([b[2], b[3]]),
            length: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            offset: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        }
    }

    fn to_bytes(self) -> [u8; DESC_SIZE] {
        let mut b = [0u8; DESC_SIZE];
        b[0..2].copy_from_slice(&self.flags.to_ne_bytes());
        b[2..4].copy_from_slice(&self.region.to_ne_bytes());
        b[4..8].copy_from_slice(&self.length.to_ne_bytes());
        b[8..12].copy_from_slice(&self.offset.to_ne_bytes());
        // bytes 12..16: metadata, always 0.
        b
    }
}

/// Why a ring announced by the peer cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("ring size 2^{0} is larger than 2^14")]
    TooLarge(u8),
    #[error("region index {0} out of range")]
    NoSuchRegion(u16),
    #[error(
        "ring at offset {offset} ({bytes} bytes) does not fit in its region of {region_len} bytes"
    )]
    OutOfRegion {
        offset: u32,
        bytes: usize,
        region_len: usize,
    },
    #[error("ring offset {0} is not 8-byte aligned")]
    Misaligned(u32),
}

/// A ring inside one of the connection's regions.
///
/// INVARIANT: `offset .. offset + ring_bytes(log2)` lies inside `regions[region]`, and `offset` is
/// 8-byte aligned, so every header field and every descriptor slot is in bounds and the indices are
/// aligned for atomics.
#[derive(Debug, Clone)]
pub struct Ring {
    regions: Arc<[Region]>,
    region: usize,
    offset: usize,
    log2: u8,
}

impl Ring {
    /// Checks that the ring fits in its region and builds the view.
    pub fn new(
        regions: Arc<[Region]>,
        region: u16,
        offset: u32,
        log2: u8,
    ) -> Result<Ring, RingError> {
        if log2 > MAX_LOG2_RING_SIZE {
            return Err(RingError::TooLarge(log2));
        }
        let r = regions
            .get(usize::from(region))
            .ok_or(RingError::NoSuchRegion(region))?;
        let bytes = ring_bytes(log2);
        if !r.contains(offset as usize, bytes) {
            return Err(RingError::OutOfRegion {
                offset,
                bytes,
                region_len: r.len(),
            });
        }
        if !offset.is_multiple_of(8) {
            return Err(RingError::Misaligned(offset));
        }
        Ok(Ring {
            regions,
            region: usize::from(region),
            offset: offset as usize,
            log2,
        })
    }

    fn region(&self) -> &Region {
        &self.regions[self.region]
    }

    /// Number of slots.
    #[inline]
    pub fn size(&self) -> u16 {
        1 << self.log2
    }

    /// The header's cookie.
    pub fn cookie(&self) -> u32 {
        let b = self
            .region()
            .load::<4>(self.offset + OFF_COOKIE)
            .expect("INVARIANT: ring header in bounds");
        u32::from_ne_bytes(b)
    }

    /// Writes the cookie and zeroes flags, head and tail (client role, when building the ring).
    pub fn init(&self) {
        let r = self.region();
        r.store(self.offset + OFF_COOKIE, COOKIE.to_ne_bytes())
            .expect("INVARIANT: ring header in bounds");
        r.store(self.offset + OFF_FLAGS, [0u8; 4])
            .expect("INVARIANT: ring header in bounds");
        r.store(self.offset + OFF_TAIL, [0u8; 2])
            .expect("INVARIANT: ring header in bounds");
    }

    fn atomic(&self, off: usize) -> &AtomicU16 {
        self.region()
            .atomic_u16(self.offset + off)
            .expect("INVARIANT: ring header in bounds and aligned")
    }

    /// The flags word (bit 0: MASK_INT), written by the ring's consumer.
    #[inline]
    pub fn flags(&self) -> &AtomicU16 {
        self.atomic(OFF_FLAGS)
    }

    /// The head index, written by the client.
    #[inline]
    pub fn head(&self) -> &AtomicU16 {
        self.atomic(OFF_HEAD)
    }

    /// The tail index, written by the server.
    #[inline]
    pub fn tail(&self) -> &AtomicU16 {
        self.atomic(OFF_TAIL)
    }

    #[inline]
    fn desc_offset(&self, slot: u16) -> usize {
        self.offset + HEADER_SIZE + DESC_SIZE * usize::from(slot & (self.size() - 1))
    }

    /// Copies the descriptor of `slot` (a free-running counter; masked here) out of shared memory.
    #[inline]
    pub fn desc(&self, slot: u16) -> Desc {
        Desc::from_bytes(
            self.region()
                .load(self.desc_offset(slot))
                .expect("INVARIANT: slot in bounds"),
        )
    }

    /// Writes the whole descriptor of `slot` (flags assigned, never OR-ed; metadata 0).
    #[inline]
    pub fn set_desc(&self, slot: u16, desc: Desc) {
        self.region()
            .store(self.desc_offset(slot), desc.to_bytes())
            .expect("INVARIANT: slot in bounds");
    }

    /// Writes only flags and length of `slot`, leaving the peer's region and offset untouched.
    #[inline]
    pub fn set_desc_flags_length(&self, slot: u16, flags: u16, length: u32) {
        let off = self.desc_offset(slot);
        let r = self.region();
        r.store(off, flags.to_ne_bytes())
            .expect("INVARIANT: slot in bounds");
        r.store(off + 4, length.to_ne_bytes())
            .expect("INVARIANT: slot in bounds");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn header_and_descriptors_sit_where_the_spec_says() {
        let region = Region::create("ring", 33_024).unwrap();
        let regions: Arc<[Region]> = Arc::from(vec![region]);
        let ring = Ring::new(regions.clone(), 0, 16_512, 10).unwrap();
        ring.init();
        ring.head().store(0x1234, Ordering::Release);
        ring.tail().store(0x5678, Ordering::Release);
        ring.flags().store(RING_FLAG_MASK_INT, Ordering::Relaxed);
        ring.set_desc(
            1025,
            Desc {
                flags: 1,
                region: 2,
                length: 3,
                offset: 4,
            },
        );
        let r = &regions[0];
        assert_eq!(r.load::<4>(16_512), Some(COOKIE.to_ne_bytes()));
        assert_eq!(r.load::<2>(16_512 + 4), Some(1u16.to_ne_bytes()));
        assert_eq!(r.load::<2>(16_512 + 6), Some(0x1234u16.to_ne_bytes()));
        assert_eq!(r.load::<2>(16_512 + 64), Some(0x5678u16.to_ne_bytes()));
        // Slot 1025 wraps to slot 1: offset 128 + 16.
        let d = r.load::<16>(16_512 + 128 + 16).unwrap();
        assert_eq!(d, [1, 0, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            ring.desc(1),
            Desc {
                flags: 1,
                region: 2,
                length: 3,
                offset: 4
            }
        );
        ring.set_desc_flags_length(1, 0, 99);
        assert_eq!(
            ring.desc(1),
            Desc {
                flags: 0,
                region: 2,
                length: 99,
                offset: 4
            }
        );
        assert_eq!(ring_bytes(10), 16_512);
    }

    #[test]
    fn rings_outside_their_region_are_refused() {
        let regions: Arc<[Region]> = Arc::from(vec![Region::create("ring", 16_512).unwrap()]);
        assert!(Ring::new(regions.clone(), 0, 0, 10).is_ok());
        assert_eq!(
            Ring::new(regions.clone(), 0, 8, 10).unwrap_err(),
            RingError::OutOfRegion {
                offset: 8,
                bytes: 16_512,
                region_len: 16_512
            }
        );
        assert_eq!(
            Ring::new(regions.clone(), 1, 0, 10).unwrap_err(),
            RingError::NoSuchRegion(1)
        );
        assert_eq!(
            Ring::new(regions.clone(), 0, 0, 15).unwrap_err(),
            RingError::TooLarge(15)
        );
        assert_eq!(
            Ring::new(regions.clone(), 0, 4, 4).unwrap_err(),
            RingError::Misaligned(4)
        );
        assert!(Ring::new(regions, 0, u32::MAX, 0).is_err());
    }
}
