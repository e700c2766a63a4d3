//! Operating-system primitives shared by backup and restore: child
//! processes ([`child`]), file-descriptor-relative file system calls that
//! never follow a symlink ([`fs`]) and the backup's directory walk on top
//! of them ([`walk`]), and the allocator settings of a long-running process
//! ([`mem`]).

pub mod child;
pub mod fs;
pub mod mem;
pub mod secret_file;
pub mod walk;

/// This machine's name as the kernel knows it (what manifests, leases and
/// reports record as the host).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
