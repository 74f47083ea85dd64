"""The proxy (``proxy.py``): the hot path of every Trino request, with the request it handles as an
``Exchange`` (``exchange.py``) and the header rules between client and backend (``headers.py``)."""

from gateway.dataplane.exchange import Exchange, Receive, Scope, Send, gateway_base
from gateway.dataplane.proxy import OBSERVED, Proxy, ResponseAborted

__all__ = ["OBSERVED", "Exchange", "Proxy", "Receive", "ResponseAborted", "Scope", "Send", "gateway_base"]
