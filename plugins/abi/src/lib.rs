#![no_std]
//! Placeholder: see the crate description.
