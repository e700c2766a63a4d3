//! PostgreSQL plumbing shared by backup, restore and verify: connections
//! and discovery ([`conn`]), the client programs ([`tools`]) and catalog
//! SQL ([`sql`]).

pub mod conn;
pub mod sql;
pub mod tools;
