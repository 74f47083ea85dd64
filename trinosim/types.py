"""DuckDB result types as Trino column types, and DuckDB values in Trino's JSON encoding."""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import duckdb

Encoder = Callable[[Any], Any]
VARCHAR_MAX = 2147483647


def _simple(raw: str) -> dict[str, Any]:
    return {"rawType": raw, "arguments": []}


def _long(raw: str, *values: int) -> dict[str, Any]:
    return {"rawType": raw, "arguments": [{"kind": "LONG", "value": v} for v in values]}


def _nested(raw: str, *children: dict[str, Any]) -> dict[str, Any]:
    return {"rawType": raw, "arguments": [{"kind": "TYPE", "value": c} for c in children]}


class TrinoType:
    """One column type: its display name, its client type signature and the value encoder."""

    __slots__ = ("encode", "name", "signature")

    def __init__(self, name: str, signature: dict[str, Any], encode: Encoder | None) -> None:
        self.name = name
        self.signature = signature
        # None means the DuckDB value is already the JSON value (the common, fast case).
        self.encode = encode


def _identity_or(encoder: Encoder | None) -> Encoder:
    return encoder if encoder is not None else (lambda v: v)


def _encode_double(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _encode_timestamp(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _encode_timestamp_tz(value: dt.datetime) -> str:
    zone = getattr(value.tzinfo, "key", None) or value.strftime("%z")
    if zone in ("Etc/UTC", "UTC", "+0000"):
        zone = "UTC"
    elif zone.startswith(("+", "-")) and len(zone) == 5:
        zone = f"{zone[:3]}:{zone[3:]}"
    return f"{value.strftime('%Y-%m-%d %H:%M:%S.%f')} {zone}"


def _encode_interval(value: dt.timedelta) -> str:
    total_ms = round(value.total_seconds() * 1000)
    sign = "-" if total_ms < 0 else ""
    total_ms = abs(total_ms)
    days, rest = divmod(total_ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{sign}{days} {hours:02}:{minutes:02}:{seconds:02}.{millis:03}"


def _not_null(encoder: Encoder) -> Encoder:
    return lambda v: None if v is None else encoder(v)


_SCALARS: dict[str, tuple[str, dict[str, Any], Encoder | None]] = {
    "boolean": ("boolean", _simple("boolean"), None),
    "tinyint": ("tinyint", _simple("tinyint"), None),
    "smallint": ("smallint", _simple("smallint"), None),
    "integer": ("integer", _simple("integer"), None),
    "bigint": ("bigint", _simple("bigint"), None),
    "utinyint": ("smallint", _simple("smallint"), None),
    "usmallint": ("integer", _simple("integer"), None),
    "uinteger": ("bigint", _simple("bigint"), None),
    # Trino's sum(bigint) is bigint where DuckDB widens to HUGEINT; report what Trino would.
    "hugeint": ("bigint", _simple("bigint"), None),
    "ubigint": ("decimal(20,0)", _long("decimal", 20, 0), _not_null(str)),
    "uhugeint": ("decimal(38,0)", _long("decimal", 38, 0), _not_null(str)),
    "float": ("real", _simple("real"), _not_null(_encode_double)),
    "double": ("double", _simple("double"), _not_null(_encode_double)),
    "varchar": ("varchar", _long("varchar", VARCHAR_MAX), None),
    "blob": ("varbinary", _simple("varbinary"), _not_null(lambda v: base64.b64encode(v).decode())),
    "bit": ("varchar", _long("varchar", VARCHAR_MAX), _not_null(str)),
    "date": ("date", _simple("date"), _not_null(lambda v: v.isoformat())),
    "time": ("time(6)", _long("time", 6), _not_null(lambda v: v.strftime("%H:%M:%S.%f"))),
    "time with time zone": (
        "time(6) with time zone",
        _long("time with time zone", 6),
        _not_null(lambda v: v.strftime("%H:%M:%S.%f") + (v.strftime("%z")[:3] + ":" + v.strftime("%z")[3:])),
    ),
    "timestamp": ("timestamp(6)", _long("timestamp", 6), _not_null(_encode_timestamp)),
    "timestamp_s": ("timestamp(0)", _long("timestamp", 0), _not_null(lambda v: v.strftime("%Y-%m-%d %H:%M:%S"))),
    "timestamp_ms": (
        "timestamp(3)",
        _long("timestamp", 3),
        _not_null(lambda v: v.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]),
    ),
    "timestamp_ns": ("timestamp(6)", _long("timestamp", 6), _not_null(_encode_timestamp)),
    "timestamp with time zone": (
        "timestamp(6) with time zone",
        _long("timestamp with time zone", 6),
        _not_null(_encode_timestamp_tz),
    ),
    "interval": ("interval day to second", _simple("interval day to second"), _not_null(_encode_interval)),
    "uuid": ("uuid", _simple("uuid"), _not_null(str)),
    "json": ("json", _simple("json"), None),
    "enum": ("varchar", _long("varchar", VARCHAR_MAX), None),
    "null": ("unknown", _simple("unknown"), None),
}


def _decimal(precision: int, scale: int) -> TrinoType:
    def encode(value: Decimal | None) -> str | None:
        return None if value is None else f"{value:.{scale}f}"

    return TrinoType(f"decimal({precision},{scale})", _long("decimal", precision, scale), encode)


def trino_type(duck: duckdb.typing.DuckDBPyType) -> TrinoType:
    """The Trino type a real coordinator would report for a DuckDB result column."""
    kind = duck.id
    if kind in _SCALARS:
        name, signature, encode = _SCALARS[kind]
        return TrinoType(name, signature, encode)
    children = list(duck.children) if kind in ("decimal", "list", "array", "struct", "map") else []
    if kind == "decimal":
        params = dict(children)
        return _decimal(int(params["precision"]), int(params["scale"]))
    if kind in ("list", "array"):
        element = trino_type(children[0][1])
        element_encode = element.encode
        encode = None if element_encode is None else _not_null(lambda v: [element_encode(x) for x in v])
        return TrinoType(f"array({element.name})", _nested("array", element.signature), encode)
    if kind == "map":
        key, value = trino_type(children[0][1]), trino_type(children[1][1])
        key_encode, value_encode = _identity_or(key.encode), _identity_or(value.encode)

        def encode_map(v: dict[Any, Any]) -> dict[str, Any]:
            # Trino's JSON map keys are always strings, whatever the key type.
            return {str(key_encode(k)): value_encode(x) for k, x in v.items()}

        return TrinoType(
            f"map({key.name}, {value.name})",
            _nested("map", key.signature, value.signature),
            _not_null(encode_map),
        )
    if kind == "struct":
        fields = [(name, trino_type(child)) for name, child in children]
        encoders = [(name, _identity_or(t.encode)) for name, t in fields]
        # sqlglot writes Trino's anonymous ROW(1, 'x') as a struct with fields _0, _1, ...
        anonymous = all(name == f"_{i}" for i, (name, _) in enumerate(fields))
        arguments = [
            {
                "kind": "NAMED_TYPE",
                "value": {"typeSignature": t.signature}
                if anonymous
                else {"fieldName": {"name": name}, "typeSignature": t.signature},
            }
            for name, t in fields
        ]
        # A row is a JSON array of its field values, in field order.
        return TrinoType(
            "row(" + ", ".join(t.name if anonymous else f"{name} {t.name}" for name, t in fields) + ")",
            {"rawType": "row", "arguments": arguments},
            _not_null(lambda v: [enc(v[name]) for name, enc in encoders]),
        )
    return TrinoType("varchar", _long("varchar", VARCHAR_MAX), _not_null(str))


def column(name: str, trino: TrinoType) -> dict[str, Any]:
    return {"name": name, "type": trino.name, "typeSignature": trino.signature}


def row_encoder(types: list[TrinoType]) -> Callable[[list[tuple[Any, ...]]], list[list[Any]]]:
    """A function turning DuckDB rows into Trino JSON rows, as cheap as the types allow."""
    encoders = [t.encode for t in types]
    if all(e is None for e in encoders):
        return lambda rows: [list(r) for r in rows]
    plan = [(i, e) for i, e in enumerate(encoders) if e is not None]

    def encode(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
        out = []
        for r in rows:
            values = list(r)
            for i, e in plan:
                values[i] = e(values[i])
            out.append(values)
        return out

    return encode


BIGINT = TrinoType("bigint", _simple("bigint"), None)
VARCHAR = TrinoType("varchar", _long("varchar", VARCHAR_MAX), None)
