"""The daemon as a process: it wires sources, pipeline, events and HTTP together; systemd, logs."""
