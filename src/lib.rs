//! wireguard-vpp: a userspace WireGuard endpoint attached to the FD.io VPP router through a memif
//! shared-memory interface instead of a TUN device.
//!
//! The parts, each knowing as little of the others as it can:
//! - [`config`]: the original's `if`/`gw` JSON files and environment variables, loaded and validated.
//! - [`memif`]: the memif protocol (both roles, burst RX/TX); the only home of `unsafe`.
//! - [`vpp`]: the VPP binary API client and the transactional setup/undo of a tunnel's VPP objects.
//! - [`l2`]: Ethernet, ARP and NDP between memif frames and IP packets; pure code, no I/O.
//! - [`wg`]: the WireGuard device (gotatun) with packet I/O from the l2 side, and the UAPI server.
//! - [`tunnel`]: one tunnel's whole life, shared by the CLI and the controller.
//! - [`k8s`]: the `WireGuardVppTunnel` custom resource and the in-pod controller.
//! - [`task`]: spawned tasks owned by a value, aborted with it, named by their span.

// `unsafe` only in `memif`, whose shared memory needs it (that module allows it, with a SAFETY note each).
#![deny(unsafe_code)]

pub mod config;
#[cfg(feature = "k8s")]
pub mod k8s;
pub mod l2;
pub mod mac;
pub mod memif;
pub mod task;
pub mod tunnel;
pub mod vpp;
pub mod wg;
