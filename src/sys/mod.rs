//! Operating-system primitives shared by backup and restore: child
//! processes ([`child`]) and file-descriptor-relative directory access
//! that never follows a symlink ([`walk`]).

pub mod child;
pub mod walk;
