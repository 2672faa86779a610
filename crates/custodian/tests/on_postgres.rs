//! The HTTP suites of storage, search, bundles, export, encryption at rest and the audit
//! trail again, from the same test code, with the server keeping its records in
//! PostgreSQL (`CUSTODIAN_TEST_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`; each server gets a schema of
//! its own). The harness (`common::on_postgres`) knows this binary by its name.
//! When PostgreSQL is unreachable the whole binary prints a notice and passes, and
//! under `CI=true` it fails.

// Each suite declares `mod common;` so that it also builds as a binary of its own; here
// the harness is therefore compiled once per suite.
#![allow(clippy::duplicate_mod)]

#[path = "api.rs"]
mod api;
#[path = "audit.rs"]
mod audit;
#[path = "bundle_patch.rs"]
mod bundle_patch;
#[path = "bundles.rs"]
mod bundles;
#[path = "conditional.rs"]
mod conditional;
#[path = "crypt.rs"]
mod crypt;
#[path = "disclosure.rs"]
mod disclosure;
#[path = "everything.rs"]
mod everything;
#[path = "export.rs"]
mod export;
#[path = "search.rs"]
mod search;
