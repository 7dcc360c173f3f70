"""chiml's serving runtimes (the data plane): kserve.Model subclasses, one per runtime."""

__version__ = "0.1.0"
