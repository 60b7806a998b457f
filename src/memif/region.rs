//! Shared-memory regions: one `MAP_SHARED` mapping of a memfd, created here (client role) or received
//! from the peer (server role).
//!
//! The peer writes this memory while we read it, so no Rust reference (`&[u8]`, `&T`) ever points into
//! it: bytes move only by raw copies into or out of our own buffers, descriptors by volatile loads and
//! stores, and ring indices through atomics. Every access is bounds-checked against the mapping first;
//! an offset or length from the peer can never reach outside it. The mapping is unmapped on drop.
//!
//! # Regions received from a peer, and SIGBUS
//!
//! A mapping of a file faults (SIGBUS, which kills the process) when a page it covers no longer exists
//! in the file. The peer keeps its own descriptor of the file, so unless the file forbids it, the peer
//! can `ftruncate` it after we mapped it and take down this process and every tunnel in it.
//!
//! What the peers really send (checked with `fstat`, `F_GET_SEALS` and `/proc/self/fd` on the
//! descriptors received by a listening socket):
//! - VPP v26.06 as memif client, copy mode (`no-zero-copy`, what `memif_create` of this program asks
//!   for): one region, a memfd named `memif<socket>/<id> region 0`, sealed `F_SEAL_SHRINK` only,
//!   `fstat` size equal to the announced size (4,227,328 bytes with one queue pair, 1024 slots,
//!   2048-byte buffers). VPP's `clib_mem_vm_create_fd` always creates this region with the system page
//!   size, `MFD_ALLOW_SEALING` and `F_SEAL_SHRINK`, whatever the hugepage configuration.
//! - VPP v26.06 zero-copy (its default for a slave): region 0 (rings only, 33,024 bytes) as above, and
//!   region 1, its buffer pool (`buffers-numa-0`, 64 MiB with 16384 buffers): a memfd sealed
//!   `F_SEAL_SHRINK` when the buffers use 4 KiB pages; with hugepage buffers VPP creates it
//!   `MFD_HUGETLB` without `MFD_ALLOW_SEALING`, so unsealed.
//! - DPDK 22.11 testpmd (net_memif client, copy mode): one memfd `memif_region_0`, `F_SEAL_SHRINK`.
//!   libmemif does the same; DPDK zero-copy sends hugepage files, which cannot be sealed.
//! - Interrupt descriptors (ADD_RING): eventfds, from all of them.
//!
//! The policy that follows, in [`Region::map`]: by default a peer's region must be sealed against
//! shrinking (then no one, the peer included, can make it smaller, and the size we check after reading
//! the seals stays true for the life of the mapping) and must not live on hugetlbfs (a hole punched
//! into a hugetlbfs file is refilled on the next fault only if the hugepage pool has a page left;
//! otherwise the fault is a SIGBUS, and `F_SEAL_SHRINK` does not forbid punching holes). Every peer of
//! this program's deployments (VPP in copy mode, DPDK and libmemif in copy mode) passes. Refusing the
//! others is a clear error at connect time instead of a crash at an unknown later time. Zero-copy peers
//! over hugepages need the explicit opt-in `ServerConfig::allow_unsealed_regions`, which trusts that
//! peer with the life of the process (a warning says so for each such region). Catching the SIGBUS
//! instead (a process-wide handler that maps anonymous memory over the vanished pages, as Wayland
//! compositors do) would make that opt-in safe too; it is not done, since no peer of ours needs it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU16;

/// A mapped shared-memory region.
///
/// INVARIANT: `base` points to a live mapping of exactly `len` bytes (len > 0), readable and writable,
/// that lives as long as this value.
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    /// Kept for regions we created (to send to the peer); `None` for the peer's, closed once mapped.
    fd: Option<OwnedFd>,
}

// SAFETY: `Region` owns its mapping; the raw pointer is only dereferenced through the bounds-checked
// methods below, which use raw copies, volatile accesses or atomics, all valid from any thread.
unsafe impl Send for Region {}
// SAFETY: as above; no method hands out references into the mapping, so shared use cannot alias.
unsafe impl Sync for Region {}

/// The largest region accepted from a peer: VPP's and DPDK's are a few MiB (rings and buffers), so a
/// peer announcing more is refused rather than mapped.
pub const MAX_PEER_REGION: usize = 1 << 30;

impl Region {
    /// Creates a region of `len` bytes: a memfd sealed against shrinking (so the peer cannot make our
    /// accesses fault by truncating it), sized and mapped.
    pub fn create(name: &str, len: usize) -> io::Result<Region> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a memif region cannot be empty",
            ));
        }
        let cname = std::ffi::CString::new(name.replace('\0', "")).map_err(io::Error::other)?;
        // SAFETY: `cname` is a valid NUL-terminated string; memfd_create only reads it.
        let raw = unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size =
            libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: plain syscalls on an fd we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Self::map_fd(fd, len)
    }

    /// Maps a region received from the peer: `len` bytes from offset 0 of `fd`, which must be a regular
    /// file of at least `len` bytes and at most [`MAX_PEER_REGION`], sealed against shrinking and not on
    /// hugetlbfs, so that no access within the mapping can ever fault (see the module documentation).
    /// `allow_unsealed` waives the last two conditions, with a warning. The descriptor is closed once
    /// mapped: the mapping keeps the file alive, and a peer's hundred regions cost no descriptors.
    pub fn map(fd: OwnedFd, len: u64, allow_unsealed: bool) -> io::Result<Region> {
        let refused = |reason: String| Err(io::Error::new(io::ErrorKind::InvalidInput, reason));
        let Ok(len) = usize::try_from(len) else {
            return refused(format!(
                "region of {len} bytes, more than the {MAX_PEER_REGION} accepted"
            ));
        };
        if len == 0 {
            return refused("region size is 0".to_owned());
        }
        if len > MAX_PEER_REGION {
            return refused(format!(
                "region of {len} bytes, more than the {MAX_PEER_REGION} accepted"
            ));
        }
        let mode = fstat(fd.as_fd())?.st_mode & libc::S_IFMT;
        if mode != libc::S_IFREG {
            return refused(format!(
                "region fd is not a regular file or memfd but {}",
                file_kind(mode)
            ));
        }
        // The seals first, then the size: once F_SEAL_SHRINK is set the size can only grow, so the size
        // read afterwards holds for as long as the mapping lives.
        // SAFETY: F_GET_SEALS reads a flag word of an open fd; it fails harmlessly on files without seals.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        let shrink_sealed = seals >= 0 && seals & libc::F_SEAL_SHRINK != 0;
        let hugetlbfs = is_hugetlbfs(fd.as_fd())?;
        if !allow_unsealed {
            if !shrink_sealed {
                return refused(
                    "region is not sealed against shrinking (F_SEAL_SHRINK), so the peer could \
                     truncate it and crash us"
                        .to_owned(),
                );
            }
            if hugetlbfs {
                return refused(
                    "region is a hugetlbfs file, whose pages the peer can punch out".to_owned(),
                );
            }
        } else if !shrink_sealed || hugetlbfs {
            tracing::warn!(
                len,
                shrink_sealed,
                hugetlbfs,
                "memif: accepting a peer region that the peer could make fault (allow_unsealed_regions); \
                 a peer that truncates it or punches holes in it would crash this process"
            );
        }
        let size = fstat(fd.as_fd())?.st_size;
        if u64::try_from(size).unwrap_or(0) < len as u64 {
            return refused(format!(
                "region file holds {size} bytes, fewer than the announced {len}"
            ));
        }
        let mut region = Self::map_fd(fd, len)?;
        region.fd = None;
        Ok(region)
    }

    fn map_fd(fd: OwnedFd, len: usize) -> io::Result<Region> {
        // SAFETY: a fresh shared mapping chosen by the kernel (no MAP_FIXED), so no existing memory is
        // replaced; the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Region {
            base,
            len,
            fd: Some(fd),
        })
    }

    /// Size of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The file descriptor of a region we created, to send to the peer (`None` for a peer's region).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(OwnedFd::as_fd)
    }

    /// True when `len` bytes at `offset` lie inside the mapping.
    #[inline]
    pub fn contains(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }

    /// A raw pointer to `offset`, after checking that `len` bytes from there are inside the mapping.
    #[inline]
    fn ptr(&self, offset: usize, len: usize) -> Option<*mut u8> {
        // SAFETY: `offset + len <= self.len` is checked first, so the result stays inside the mapping.
        self.contains(offset, len)
            .then(|| unsafe { self.base.as_ptr().add(offset) })
    }

    /// Copies `dst.len()` bytes at `offset` out of the region. `None` (nothing copied) when out of bounds.
    #[inline]
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Option<()> {
        let src = self.ptr(offset, dst.len())?;
        // SAFETY: `src..src+len` is inside the mapping (checked by `ptr`), `dst` is our own buffer and
        // cannot overlap the mapping. The peer may write these bytes concurrently: we never form a
        // reference to them and copy them exactly once, so the worst a peer can do is hand us garbage
        // bytes, which the caller treats as untrusted frame data.
        unsafe { copy_from_shared(src, dst) };
        Some(())
    }

    /// Copies `src` into the region at `offset`. `None` (nothing written) when out of bounds.
    #[inline]
    pub fn write(&self, offset: usize, src: &[u8]) -> Option<()> {
        let dst = self.ptr(offset, src.len())?;
        // SAFETY: `dst..dst+len` is inside the mapping (checked by `ptr`) and `src` is our own memory.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Some(())
    }

    /// Volatile load of `N` bytes at `offset` (descriptors, cookies, flags).
    #[inline]
    pub fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let p = self.ptr(offset, N)?;
        // SAFETY: in bounds (checked); `[u8; N]` has alignment 1, so any offset is aligned.
        Some(unsafe { std::ptr::read_volatile(p.cast::<[u8; N]>()) })
    }

    /// Volatile store of `N` bytes at `offset`.
    #[inline]
    pub fn store<const N: usize>(&self, offset: usize, bytes: [u8; N]) -> Option<()> {
        let p = self.ptr(offset, N)?;
        // SAFETY: in bounds (checked); `[u8; N]` has alignment 1.
        unsafe { std::ptr::write_volatile(p.cast::<[u8; N]>(), bytes) };
        Some(())
    }

    /// The `u16` at `offset` as an atomic (ring head, tail and flags). `None` when out of bounds or not
    /// 2-byte aligned.
    #[inline]
    pub fn atomic_u16(&self, offset: usize) -> Option<&AtomicU16> {
        let p = self.ptr(offset, 2)?;
        if !(p as usize).is_multiple_of(std::mem::align_of::<AtomicU16>()) {
            return None;
        }
        // SAFETY: in bounds and aligned (checked); the mapping lives as long as `&self`; every access by
        // this process to these bytes is atomic, and an atomic may be changed by the peer at any time.
        Some(unsafe { AtomicU16::from_ptr(p.cast::<u16>()) })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe the mapping this value owns (INVARIANT); nothing can use it after
        // drop because every user holds the region (through an `Arc`) while it accesses memory.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("len", &self.len)
            .field("fd", &self.fd.as_ref().map(OwnedFd::as_raw_fd))
            .finish()
    }
}

/// Copies bytes out of memory that the peer may be writing at the same time.
///
/// Why a plain `memcpy` and not volatile loads: frame bytes are opaque data, read once into our own
/// buffer and never checked in place, so a peer changing them mid-copy can only hand us different
/// bytes, which is what a hostile peer can do anyway. Everything that steers memory accesses
/// (descriptors, ring header) is read with volatile loads or atomics, copied once, then validated.
/// A volatile word-by-word copy measured 6.7 times slower than `memcpy` for 64- and 1500-byte frames.
///
/// # Safety
/// `src..src + dst.len()` must be inside a live mapping, and must not overlap `dst`.
#[inline]
unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    // SAFETY: the caller guarantees the range; memcpy from a raw pointer forms no reference, reads each
    // byte once, and stores only into `dst`.
    unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
}

pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: `stat` is plain data that fstat fills in; a zeroed one is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer and the fd is open.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn is_hugetlbfs(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: `statfs` is plain data that fstatfs fills in; a zeroed one is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable statfs buffer and the fd is open.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // The magic is 32 bits; `f_type` is wider and signed on some targets.
    Ok(st.f_type as u32 == 0x9584_58f6)
}

/// The kind of file `mode & S_IFMT` says, for refusals.
pub(crate) fn file_kind(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFSOCK => "a socket",
        libc::S_IFIFO => "a pipe",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFLNK => "a symbolic link",
        _ => "an anonymous inode (eventfd, timerfd, ...)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn created_region_is_sealed_and_shared_with_a_second_mapping() {
        let a = Region::create("test", 10_000).unwrap();
        let fd = a.fd().unwrap().try_clone_to_owned().unwrap();
        // SAFETY: test code; plain fcntl on an fd we own.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        assert_ne!(seals & libc::F_SEAL_SHRINK, 0);
        let b = Region::map(fd, 10_000, false).unwrap();
        a.write(9_990, b"0123456789").unwrap();
        let mut got = [0u8; 10];
        b.read(9_990, &mut got).unwrap();
        assert_eq!(&got, b"0123456789");
        a.atomic_u16(64).unwrap().store(0xbeef, Ordering::Release);
        assert_eq!(b.atomic_u16(64).unwrap().load(Ordering::Acquire), 0xbeef);
        assert_eq!(b.load::<2>(64), Some(0xbeefu16.to_ne_bytes()));
    }

    #[test]
    fn out_of_bounds_and_misaligned_accesses_are_refused() {
        let r = Region::create("test", 4096).unwrap();
        let mut buf = [0u8; 16];
        assert!(r.read(4090, &mut buf).is_none());
        assert!(r.read(usize::MAX - 4, &mut buf).is_none());
        assert!(r.write(4081, &buf).is_none());
        assert!(r.load::<16>(4081).is_none());
        assert!(r.store(4095, [0u8; 2]).is_none());
        assert!(r.atomic_u16(4095).is_none());
        assert!(r.atomic_u16(7).is_none());
        assert!(r.read(4080, &mut buf).is_some());
    }

    #[test]
    fn mapping_more_than_the_file_holds_is_refused() {
        let r = Region::create("test", 4096).unwrap();
        let fd = r.fd().unwrap().try_clone_to_owned().unwrap();
        let err = Region::map(fd, 8192, false).unwrap_err();
        assert!(
            err.to_string().contains("fewer than the announced"),
            "{err}"
        );
        let fd = r.fd().unwrap().try_clone_to_owned().unwrap();
        assert!(Region::map(fd, 0, false).is_err());
        let fd = r.fd().unwrap().try_clone_to_owned().unwrap();
        let err = Region::map(fd, MAX_PEER_REGION as u64 + 1, false).unwrap_err();
        assert!(err.to_string().contains("more than the"), "{err}");
    }

    #[test]
    fn a_region_fd_that_is_no_file_is_refused() {
        let (socket, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        let err = Region::map(socket.into(), 4096, false).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(err.to_string().ends_with("a socket"), "{err}");
        let dir = std::fs::File::open(".").unwrap();
        let err = Region::map(dir.into(), 4096, true).unwrap_err();
        assert!(err.to_string().ends_with("a directory"), "{err}");
    }

    /// A memfd nobody sealed, `len` bytes long.
    fn unsealed_memfd(len: i64) -> OwnedFd {
        // SAFETY: a valid NUL-terminated name; the result is checked.
        let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain syscall on an fd we own.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }, 0);
        fd
    }

    #[test]
    fn an_unsealed_region_is_refused_unless_allowed() {
        let err = Region::map(unsealed_memfd(4096), 4096, false).unwrap_err();
        assert!(
            err.to_string().contains("not sealed against shrinking"),
            "{err}"
        );
        let r = Region::map(unsealed_memfd(4096), 4096, true).unwrap();
        assert_eq!(r.len(), 4096);
        // A file on a disk cannot be sealed at all.
        let file = tempfile::tempfile().unwrap();
        file.set_len(4096).unwrap();
        let err = Region::map(file.into(), 4096, false).unwrap_err();
        assert!(
            err.to_string().contains("not sealed against shrinking"),
            "{err}"
        );
    }

    #[test]
    fn a_hugetlbfs_region_is_refused_even_when_sealed() {
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | libc::MFD_HUGETLB;
        // SAFETY: a valid NUL-terminated name; the result is checked.
        let raw = unsafe { libc::memfd_create(c"huge".as_ptr(), flags) };
        if raw < 0 {
            eprintln!("SKIPPED: this kernel has no hugetlbfs memfd");
            return;
        }
        // SAFETY: a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain syscalls on an fd we own.
        unsafe {
            assert_eq!(libc::ftruncate(fd.as_raw_fd(), 2 << 20), 0);
            assert_eq!(
                libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK),
                0
            );
        }
        let err = Region::map(fd, 2 << 20, false).unwrap_err();
        assert!(err.to_string().contains("hugetlbfs"), "{err}");
    }

    #[test]
    fn a_peer_region_keeps_no_descriptor_open() {
        // A unique name, so that no other test's descriptor can match.
        let name = format!("closed-{}", std::process::id());
        let a = Region::create(&name, 4096).unwrap();
        let fd = a.fd().unwrap().try_clone_to_owned().unwrap();
        drop(a);
        let open = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().contains(&name))
                .count()
        };
        assert_eq!(open(), 1);
        let b = Region::map(fd, 4096, false).unwrap();
        assert!(b.fd().is_none());
        assert_eq!(open(), 0, "closed once mapped");
        b.write(0, b"still mapped").unwrap();
    }
}
