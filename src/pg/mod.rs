//! PostgreSQL plumbing shared by backup, restore and verify: the client
//! programs ([`tools`]) and catalog SQL ([`sql`]).

pub mod sql;
pub mod tools;
