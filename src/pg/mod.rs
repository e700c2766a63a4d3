//! PostgreSQL plumbing shared by backup, restore and verify: connections
//! and discovery ([`conn`]), the client programs ([`tools`]), catalog
//! SQL ([`sql`]) and the archive listings `pg_restore -l` prints
//! ([`toc_list`]).

pub mod conn;
pub mod sql;
pub mod toc_list;
pub mod tools;
