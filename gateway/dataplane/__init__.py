"""The data plane: the Trino protocol through the gateway. ``proxy`` takes every request and hands it
on: a new query to ``submit`` (route, admit, then ``sending``'s one loop of attempts), a request of a
query the gateway holds to ``held_requests``, any other to ``forward``. Each request travels as an
``Exchange``; ``attempt`` sends one request of a query once and says what came of it."""

from gateway.dataplane.exchange import Exchange, Receive, Scope, Send, gateway_base
from gateway.dataplane.proxy import OBSERVED, Proxy, ResponseAborted

__all__ = ["OBSERVED", "Exchange", "Proxy", "Receive", "ResponseAborted", "Scope", "Send", "gateway_base"]
