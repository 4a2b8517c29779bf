"""The top layer: what runs an experiment end to end.

`run.run_experiment` runs a config on the runtime it names; `server_app` and `client_app` are the
Flower apps that carry the same host steps between machines, `simulation` runs both on one machine
with Flower's simulation engine, and `run_cli` is `lada run` / `lada compare`. Everything here
may import any layer below (tasks < models < method < hosts < federation < experiments); nothing
below imports from here.
"""
