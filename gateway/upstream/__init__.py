"""How the gateway talks to backends: a lean keep-alive pool for the statement protocol (the hot
path) and an aiohttp session for everything that streams or is not a query's request."""

from gateway.upstream.failures import FAILURES, NOT_SENT, TIMEOUTS, describe
from gateway.upstream.pool import Answer, UpstreamPool
from gateway.upstream.session import create_session

__all__ = ["FAILURES", "NOT_SENT", "TIMEOUTS", "Answer", "UpstreamPool", "create_session", "describe"]
