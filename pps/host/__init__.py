"""Stage 2, host: what a machine is and can do (topology, devices, namespaces, kernel features, checks)."""
