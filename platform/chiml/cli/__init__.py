"""The `chiml` command line: one module per capability, each with ``register(app)``, listed in
:data:`chiml.cli.main.COMMANDS`. A command parses its options and makes one SDK call."""
