"""The local profile's machinery: supervisord, its programs, the managed PostgreSQL."""
