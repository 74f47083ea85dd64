"""W3C trace context (``traceparent``) in and out of the gateway, without the SDK's generic machinery.

A query's trace context is kept as its ``traceparent`` string (in the query history and the query
locator's cache), so any worker, or a restarted gateway, continues the query's trace.
"""

from __future__ import annotations

import re

from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$")


def format_traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The span context in a ``traceparent`` header, or None when it is missing or invalid (then
    the gateway starts a new trace, as the W3C recommendation says)."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    # Version ff is forbidden; a future version may carry more fields, which are ignored.
    if version == "ff" or (version == "00" and len(value.strip()) != 55):
        return None
    context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16)))
    return context if context.is_valid else None


def trace_id_of(value: str | None) -> str | None:
    """The trace id (32 hex digits) of a ``traceparent`` value, or None when it holds no valid one."""
    context = parse_traceparent(value)
    return None if context is None else f"{context.trace_id:032x}"


def parent_from_traceparent(value: str | None) -> Context | None:
    """A parent context for a new span, from a ``traceparent`` value."""
    span_context = parse_traceparent(value)
    return None if span_context is None else set_span_in_context(NonRecordingSpan(span_context))
