//! The Internet checksum (RFC 1071) and the IPv6 pseudo-header sum (RFC 8200 §8.1).

use std::net::Ipv6Addr;

/// Adds `data` into a running one's-complement sum, as big-endian 16-bit words (an odd last byte is
/// padded with zero). The result is partly folded: finish it with [`fold`]. `data` must start at an even
/// offset of the checksummed whole, which holds for every caller (headers have even lengths).
pub fn accumulate(sum: u32, data: &[u8]) -> u32 {
    // Summing 32-bit words into 64 bits is the same one's-complement sum (RFC 1071 §2, "parallel
    // summation") with half the additions and no carry handling inside the loop.
    let mut acc = u64::from(sum);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        acc += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let mut tail = [0u8; 4];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    acc += u64::from(u32::from_be_bytes(tail));
    // Fold 64 -> 32 -> 17 bits: fits a u32 with room for further accumulation.
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    let folded = (acc & 0xffff) + (acc >> 16);
    (folded & 0xffff) as u32 + (folded >> 16) as u32
}

/// Folds a running sum into 16 bits and complements it: the value to store in a checksum field.
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The checksum of `data` alone. Over data that includes its own correct checksum field it is 0.
pub fn checksum(data: &[u8]) -> u16 {
    fold(accumulate(0, data))
}

/// The unfolded sum of the IPv6 pseudo-header: source, destination, upper-layer length and next header.
pub fn ipv6_pseudo_header(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u32 {
    let mut sum = accumulate(0, &src.octets());
    sum = accumulate(sum, &dst.octets());
    sum += length >> 16;
    sum += length & 0xffff;
    sum + u32::from(next_header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (before complement).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(
            checksum(&[0x12, 0x34, 0x56]),
            checksum(&[0x12, 0x34, 0x56, 0x00])
        );
    }

    #[test]
    fn data_with_its_checksum_sums_to_zero() {
        let mut data = [
            0x45, 0, 0, 0x54, 0x12, 0x34, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let sum = checksum(&data);
        data[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&data), 0);
    }

    /// The plain RFC 1071 loop, 16 bits at a time, to compare against.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u64 = 0;
        for pair in data.chunks(2) {
            sum += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    proptest::proptest! {
        #[test]
        fn matches_the_plain_16_bit_sum(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), split in 0usize..150) {
            proptest::prop_assert_eq!(checksum(&data), reference(&data));
            // Chained accumulation from an even offset gives the same result.
            let split = (split * 2).min(data.len() & !1);
            let chained = fold(accumulate(accumulate(0, &data[..split]), &data[split..]));
            proptest::prop_assert_eq!(chained, reference(&data));
        }
    }

    #[test]
    fn large_buffers_do_not_overflow() {
        let data = vec![0xff; 70_000];
        assert_eq!(checksum(&data), 0);
    }
}
