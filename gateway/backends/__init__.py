"""Backends as the gateway sees them: ``registry`` (each worker's copy of the list, re-read from the
store) and ``health`` (the checks and each backend's state machine). The backend's record itself is
the store's (``gateway.store.backend``)."""
