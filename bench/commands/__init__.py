"""One module per ``lockbench`` subcommand; each defines ``register(subparsers)``."""
