"""Data security (S1-S5): classification policy, discovery, field encryption and keys, anomaly alerts,
export control, backup and restore."""
