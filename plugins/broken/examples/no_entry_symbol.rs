//! A shared library that exports something, but not the plugin entry point.

/// Not the entry point the host looks for.
#[unsafe(no_mangle)]
pub extern "C" fn not_an_optimizer_plugin() -> i32 {
    42
}
