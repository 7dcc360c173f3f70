"""The `chiml` command line. Each capability adds one module here with a ``register(app)``."""
