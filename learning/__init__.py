"""The host-side controller: learning rules, devices, training, data, reports."""
