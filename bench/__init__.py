"""lockbench's bench: runner, cluster runtimes, history store, checker and CLI."""
