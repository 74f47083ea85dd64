"""What rule programs can touch: Java-like strings, collections and Optional, and rule objects.

Rules written for trino-gateway call Java methods (``String.contains``, ``Set.add``,
``Optional.of``). Here each such method is a whitelisted Python function: strings, numbers,
booleans and ``None`` are themselves; ``HashSet``/``HashMap``/``ArrayList`` are Python sets, dicts
and lists; objects handed to rules (the request, the user, the query properties) subclass
``RuleObject`` and list their callable methods in ``rule_methods``. Nothing else is reachable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import regex


class RuleRuntimeError(Exception):
    """A rule failed while running (null receiver, unknown method, bad types, ...)."""


_REGEX_TIMEOUT = 0.05  # seconds; a pathological pattern must not stall routing


def java_string(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, set | frozenset):
        return "[" + ", ".join(sorted(java_string(v) for v in value)) + "]"
    if isinstance(value, list):
        return "[" + ", ".join(java_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{java_string(k)}={java_string(v)}" for k, v in value.items()) + "}"
    return str(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, RuleObject):
        return type(value).java_name
    return {
        str: "String",
        bool: "Boolean",
        int: "Integer",
        float: "Double",
        set: "HashSet",
        frozenset: "Set",
        dict: "HashMap",
        list: "ArrayList",
    }.get(type(value), type(value).__name__)


class RuleObject:
    """Base of the objects rules may call methods on; only names in ``rule_methods`` are callable."""

    java_name: ClassVar[str] = "Object"
    rule_methods: ClassVar[frozenset[str]] = frozenset()

    def rule_property(self, name: str) -> Any:
        # MVEL reads ``x.name`` as ``x.getName()``, and ``x.getName`` as ``x.getName()``.
        for candidate in (name, "get" + name[:1].upper() + name[1:], "is" + name[:1].upper() + name[1:]):
            if candidate in self.rule_methods:
                return _call(getattr(self, candidate), candidate, [])
        raise RuleRuntimeError(f"{self.java_name} has no property {name!r}")


class Optional(RuleObject):
    """``java.util.Optional``: what trino-gateway's user and query properties return."""

    java_name = "Optional"
    rule_methods = frozenset({"isPresent", "isEmpty", "get", "orElse", "equals", "toString", "hashCode"})

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def isPresent(self) -> bool:
        return self.value is not None

    def isEmpty(self) -> bool:
        return self.value is None

    def get(self) -> Any:
        if self.value is None:
            raise RuleRuntimeError("Optional.get() on an empty Optional")
        return self.value

    def orElse(self, other: Any) -> Any:
        return other if self.value is None else self.value

    def equals(self, other: Any) -> bool:
        return isinstance(other, Optional) and equal(self.value, other.value)

    def hashCode(self) -> int:
        return hash(self.value)

    def toString(self) -> str:
        return "Optional.empty" if self.value is None else f"Optional[{java_string(self.value)}]"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Optional) and self.value == other.value

    def __hash__(self) -> int:
        return hash(("Optional", self.value))

    def __str__(self) -> str:
        return self.toString()


class _StaticClass(RuleObject):
    """A Java class name used for its static members, e.g. ``java.util.Optional.of``."""

    java_name = "Class"

    def __init__(self, name: str, methods: dict[str, Callable[..., Any]], fields: dict[str, Any]) -> None:
        self.name = name
        self.methods = methods
        self.fields = fields

    def rule_property(self, name: str) -> Any:
        if name in self.fields:
            return self.fields[name]
        raise RuleRuntimeError(f"{self.name} has no field {name!r}")


class _Package(RuleObject):
    """``java`` and ``java.util``: a path to the classes above."""

    java_name = "package"

    def __init__(self, members: dict[str, Any]) -> None:
        self.members = members

    def rule_property(self, name: str) -> Any:
        if name in self.members:
            return self.members[name]
        raise RuleRuntimeError(f"no class or package {name!r}")


def _optional_of(value: Any) -> Optional:
    if value is None:
        raise RuleRuntimeError("Optional.of(null)")
    return Optional(value)


OPTIONAL_CLASS = _StaticClass(
    "Optional",
    {"of": _optional_of, "ofNullable": Optional, "empty": lambda: Optional()},
    {},
)
# trino-gateway's rules write the result key through this class constant.
RESULTS_ROUTING_GROUP_KEY = "routingGroup"
SELECTOR_CLASS = _StaticClass(
    "FileBasedRoutingGroupSelector", {}, {"RESULTS_ROUTING_GROUP_KEY": RESULTS_ROUTING_GROUP_KEY}
)

_CONSTRUCTORS: dict[str, Callable[[list[Any]], Any]] = {
    "HashSet": lambda args: set(args[0]) if args else set(),
    "LinkedHashSet": lambda args: set(args[0]) if args else set(),
    "TreeSet": lambda args: set(args[0]) if args else set(),
    "HashMap": lambda args: dict(args[0]) if args else {},
    "LinkedHashMap": lambda args: dict(args[0]) if args else {},
    "TreeMap": lambda args: dict(args[0]) if args else {},
    "ArrayList": lambda args: list(args[0]) if args and not isinstance(args[0], int) else [],
    "LinkedList": lambda args: list(args[0]) if args else [],
    "StringBuilder": lambda args: java_string(args[0]) if args else "",
}

GLOBALS: dict[str, Any] = {
    "Optional": OPTIONAL_CLASS,
    "FileBasedRoutingGroupSelector": SELECTOR_CLASS,
    "java": _Package({"util": _Package({"Optional": OPTIONAL_CLASS})}),
}


def construct(class_name: str, arguments: list[Any]) -> Any:
    short = class_name.rsplit(".", 1)[-1]
    if class_name.count(".") and not class_name.startswith(("java.util.", "java.lang.")):
        raise RuleRuntimeError(f"cannot create {class_name}: only java.util collections are available")
    factory = _CONSTRUCTORS.get(short)
    if factory is None:
        raise RuleRuntimeError(f"cannot create {class_name}: available are {', '.join(sorted(_CONSTRUCTORS))}")
    try:
        return factory(arguments)
    except TypeError as error:
        raise RuleRuntimeError(f"new {class_name}(...): {error}") from None


def equal(left: Any, right: Any) -> bool:
    # MVEL's == is Java's equals(); numbers compare by value whatever their type.
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    return left == right


def contains(container: Any, item: Any) -> bool:
    """MVEL's ``contains`` operator: substring, membership or key; ``null contains x`` is false."""
    if container is None:
        return False
    if isinstance(container, str):
        return item is not None and java_string(item) in container
    if isinstance(container, set | frozenset | list | dict):
        try:
            return item in container
        except TypeError:
            return False
    if isinstance(container, Optional):
        return contains(container.value, item)
    raise RuleRuntimeError(f"{_type_name(container)} cannot be the left side of contains")


def regex_matches(text: Any, pattern: Any) -> bool:
    if text is None:
        return False
    try:
        return regex.fullmatch(java_string(pattern), java_string(text), timeout=_REGEX_TIMEOUT) is not None
    except TimeoutError:
        raise RuleRuntimeError(f"regular expression {pattern!r} took too long") from None
    except regex.error as error:
        raise RuleRuntimeError(f"bad regular expression {pattern!r}: {error}") from None


def _substring(text: str, start: int, end: int | None = None) -> str:
    if start < 0 or start > len(text) or (end is not None and (end < start or end > len(text))):
        raise RuleRuntimeError(f"substring({start}, {end}) out of range for a string of length {len(text)}")
    return text[start:end]


def _split(text: str, pattern: str) -> list[str]:
    try:
        parts = regex.split(pattern, text, timeout=_REGEX_TIMEOUT)
    except (TimeoutError, regex.error) as error:
        raise RuleRuntimeError(f"split({pattern!r}): {error}") from None
    while parts and parts[-1] == "":  # Java drops trailing empty strings
        parts.pop()
    return parts


_STRING_METHODS: dict[str, Callable[..., Any]] = {
    "equals": lambda s, other: s == other,
    "equalsIgnoreCase": lambda s, other: isinstance(other, str) and s.lower() == other.lower(),
    "contains": lambda s, part: java_string(part) in s,
    "startsWith": lambda s, prefix: s.startswith(prefix),
    "endsWith": lambda s, suffix: s.endswith(suffix),
    "toLowerCase": str.lower,
    "toUpperCase": str.upper,
    "trim": str.strip,
    "strip": str.strip,
    "length": len,
    "isEmpty": lambda s: s == "",
    "isBlank": lambda s: s.strip() == "",
    "indexOf": lambda s, part: s.find(java_string(part)),
    "lastIndexOf": lambda s, part: s.rfind(java_string(part)),
    "substring": _substring,
    "replace": lambda s, old, new: s.replace(java_string(old), java_string(new)),
    "matches": lambda s, pattern: regex_matches(s, pattern),
    "split": _split,
    "concat": lambda s, other: s + java_string(other),
    "toString": lambda s: s,
    "hashCode": hash,
    "compareTo": lambda s, other: (s > other) - (s < other),
}


def _set_add(values: set[Any], item: Any) -> bool:
    present = item in values
    values.add(item)
    return not present


def _remove(values: set[Any] | list[Any], item: Any) -> bool:
    if item in values:
        values.remove(item)
        return True
    return False


_COLLECTION_METHODS: dict[str, Callable[..., Any]] = {
    "contains": lambda c, item: item in c,
    "containsAll": lambda c, items: all(item in c for item in items),
    "size": len,
    "isEmpty": lambda c: len(c) == 0,
    "equals": lambda c, other: c == other,
    "toString": java_string,
}
_SET_METHODS: dict[str, Callable[..., Any]] = {
    **_COLLECTION_METHODS,
    "add": _set_add,
    "remove": _remove,
    "addAll": lambda c, items: bool(c.update(items)) or True,
}
_LIST_METHODS: dict[str, Callable[..., Any]] = {
    **_COLLECTION_METHODS,
    "add": lambda c, item: bool(c.append(item)) or True,
    "get": lambda c, position: index(c, position),
    "remove": _remove,
    "indexOf": lambda c, item: c.index(item) if item in c else -1,
}
_MAP_METHODS: dict[str, Callable[..., Any]] = {
    "get": lambda m, key: m.get(key),
    "put": lambda m, key, value: _map_put(m, key, value),
    "containsKey": lambda m, key: key in m,
    "containsValue": lambda m, value: value in m.values(),
    "getOrDefault": lambda m, key, default: m.get(key, default),
    "putIfAbsent": lambda m, key, value: m.setdefault(key, value) if key not in m else m[key],
    "remove": lambda m, key: m.pop(key, None),
    "keySet": lambda m: set(m),
    "values": lambda m: list(m.values()),
    "size": len,
    "isEmpty": lambda m: len(m) == 0,
    "equals": lambda m, other: m == other,
    "toString": java_string,
}


def _map_put(mapping: dict[Any, Any], key: Any, value: Any) -> Any:
    previous = mapping.get(key)
    mapping[key] = value
    return previous


def _methods_of(receiver: Any) -> dict[str, Callable[..., Any]] | None:
    if isinstance(receiver, str):
        return _STRING_METHODS
    if isinstance(receiver, set | frozenset):
        return _SET_METHODS
    if isinstance(receiver, dict):
        return _MAP_METHODS
    if isinstance(receiver, list):
        return _LIST_METHODS
    return None


def invoke(receiver: Any, name: str, arguments: list[Any]) -> Any:
    """Call ``receiver.name(arguments)`` if the rule language allows it."""
    if receiver is None:
        raise RuleRuntimeError(f"null.{name}(): the value is null")
    if isinstance(receiver, _StaticClass):
        function = receiver.methods.get(name)
        if function is None:
            raise RuleRuntimeError(f"{receiver.name} has no static method {name!r}")
        return _call(function, name, arguments)
    if isinstance(receiver, RuleObject):
        if name not in receiver.rule_methods:
            raise RuleRuntimeError(f"{receiver.java_name} has no method {name!r}")
        return _call(getattr(receiver, name), name, arguments)
    methods = _methods_of(receiver)
    function = methods.get(name) if methods is not None else None
    if function is None:
        raise RuleRuntimeError(f"{_type_name(receiver)} has no method {name!r}")
    return _call(function, name, [receiver, *arguments])


def _call(function: Callable[..., Any], name: str, arguments: list[Any]) -> Any:
    try:
        return function(*arguments)
    except RuleRuntimeError:
        raise
    except (TypeError, AttributeError, ValueError, KeyError) as error:
        raise RuleRuntimeError(f"{name}(...): {error}") from None


def get_property(receiver: Any, name: str) -> Any:
    """``receiver.name`` without parentheses: a zero-argument method, a getter or a field."""
    if receiver is None:
        raise RuleRuntimeError(f"null.{name}: the value is null")
    if isinstance(receiver, RuleObject):
        return receiver.rule_property(name)
    methods = _methods_of(receiver)
    if methods is not None:
        for candidate in (name, "get" + name[:1].upper() + name[1:]):
            if candidate in methods:
                return _call(methods[candidate], candidate, [receiver])
        if isinstance(receiver, dict) and name in receiver:  # MVEL reads map entries as properties
            return receiver[name]
    raise RuleRuntimeError(f"{_type_name(receiver)} has no property {name!r}")


def index(receiver: Any, key: Any) -> Any:
    if isinstance(receiver, dict):
        return receiver.get(key)
    if isinstance(receiver, list | str):
        if not isinstance(key, int) or isinstance(key, bool) or not -len(receiver) <= key < len(receiver):
            raise RuleRuntimeError(f"index {java_string(key)} out of range")
        return receiver[key]
    raise RuleRuntimeError(f"{_type_name(receiver)} cannot be indexed")
