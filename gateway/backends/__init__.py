"""Backends: ``record`` (one Trino cluster's record: the model of the config file, the store and the
admin API) and ``registry`` (each worker's view of the list). Import from the modules: the record sits
below the store, the registry above it."""
