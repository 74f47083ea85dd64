"""The proxy (``proxy.py``): the hot path of every Trino request, with the request it handles as an
``Exchange`` (``exchange.py``) and the header rules between client and backend (``headers.py``)."""

from gateway.proxy.exchange import Exchange, Receive, Scope, Send, gateway_base
from gateway.proxy.proxy import OBSERVED, Proxy, ResponseAborted

__all__ = ["OBSERVED", "Exchange", "Proxy", "Receive", "ResponseAborted", "Scope", "Send", "gateway_base"]
