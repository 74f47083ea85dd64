"""The rule language: the part of MVEL that trino-gateway's routing rules use, and nothing more.

Conditions and actions of a rules file are compiled once, when the file is loaded, into Python
closures. The language is safe by construction: there are no imports, no loops, no function
definitions and no access to Python attributes. A program can only read its variables and call
the whitelisted Java-like methods of ``gateway.routing.rules.values``; without loops, every program runs
in time proportional to its length (and regular expressions run with a timeout).

Grammar (MVEL subset): ``&&``, ``||``, ``!``, ``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=``, the ``contains``
and ``~=`` (regex) operators, ``+ - * / %``, ``? :``, method calls and property reads
(``x.getName()`` or ``x.name``), ``new HashSet()``, ``[a, b]`` lists, string/number (``1e9`` too)/``true``/
``false``/``null`` literals, statements separated by ``;`` or newlines, and ``if (...) {...} else {...}``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

from gateway.routing.rules.values import (
    RuleRuntimeError,
    construct,
    contains,
    equal,
    get_property,
    index,
    invoke,
    java_string,
    regex_matches,
)

Scope = dict[str, Any]
Compiled = Callable[[Scope], Any]

_GRAMMAR = r"""
?start: program
program: _sequence?
_sequence: if_stmt _sequence?
         | expr (_SEMICOLON _sequence?)?
         | _SEMICOLON _sequence?
if_stmt: "if" "(" expr ")" block ("else" (if_stmt | block))?
block: "{" program "}"

?expr: or_expr
     | or_expr "?" expr ":" expr              -> ternary
?or_expr: and_expr
     | or_expr "||" and_expr                  -> or_
?and_expr: comparison
     | and_expr "&&" comparison               -> and_
?comparison: sum
     | sum COMPARE sum                        -> compare
     | sum CONTAINS sum                       -> compare
?sum: product
     | sum ADD product                        -> arith
?product: unary
     | product MUL unary                      -> arith
?unary: postfix
     | "!" unary                              -> not_
     | "-" unary                              -> negate
?postfix: atom
     | postfix "." NAME "(" arguments ")"     -> method
     | postfix "." NAME                       -> property
     | postfix "[" expr "]"                   -> index
?atom: STRING                                 -> string
     | NUMBER                                 -> number
     | "true"                                 -> true
     | "false"                                -> false
     | "null"                                 -> null
     | NAME                                   -> variable
     | "new" qualified_name "(" arguments ")" -> new
     | "[" arguments "]"                      -> list_
     | "(" expr ")"
arguments: (expr ("," expr)*)?
qualified_name: NAME ("." NAME)*

COMPARE: "==" | "!=" | "<=" | ">=" | "<" | ">" | "~="
CONTAINS: "contains"
_SEMICOLON: ";"
ADD: "+" | "-"
MUL: "*" | "/" | "%"
STRING: /"(\\.|[^"\\])*"/ | /'(\\.|[^'\\])*'/
NUMBER: /\d+(\.\d+)?([eE][+-]?\d+)?/
NAME: /[A-Za-z_$][A-Za-z0-9_$]*/
COMMENT: /\/\/[^\n]*/ | /\/\*(.|\n)*?\*\//
%ignore COMMENT
%ignore /\s+/
"""

_PARSER = Lark(_GRAMMAR, parser="lalr", maybe_placeholders=False)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}


class RuleSyntaxError(ValueError):
    """A condition or action that is not valid rule language, with where and why."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        """The line of the condition or action (1-based) where it goes wrong, when the parser says."""


def _unquote(token: str) -> str:
    body = token[1:-1]
    if "\\" not in body:
        return body
    out = []
    chars = iter(body)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "\\")
            out.append(_ESCAPES.get(escaped, escaped))
        else:
            out.append(char)
    return "".join(out)


def _number(token: str) -> int | float:
    # Java's double literals: 2.5, and 1e9 (the estimates' costs are large numbers).
    return float(token) if "." in token or "e" in token or "E" in token else int(token)


def _truth(value: Any) -> bool:
    # MVEL treats null as false in boolean context; anything but a boolean is a mistake in the rule.
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise RuleRuntimeError(f"expected true or false, got {java_string(value)!r}")


def _arith(symbol: str) -> Callable[[Any, Any], Any]:
    def plus(left: Any, right: Any) -> Any:
        if isinstance(left, str) or isinstance(right, str):
            return java_string(left) + java_string(right)
        return left + right

    def divide(left: Any, right: Any) -> Any:
        if isinstance(left, int) and isinstance(right, int):
            return int(left / right)
        return left / right

    table: dict[str, Callable[[Any, Any], Any]] = {
        "+": plus,
        "-": operator.sub,
        "*": operator.mul,
        "/": divide,
        "%": operator.mod,
    }
    function = table[symbol]

    def safe(left: Any, right: Any) -> Any:
        try:
            return function(left, right)
        except (TypeError, ZeroDivisionError, OverflowError) as error:
            problem = f"cannot compute {java_string(left)} {symbol} {java_string(right)}: {error}"
            raise RuleRuntimeError(problem) from None

    return safe


def _ordered(compare: Callable[[Any, Any], bool], symbol: str) -> Callable[[Any, Any], bool]:
    def safe(left: Any, right: Any) -> bool:
        try:
            return compare(left, right)
        except TypeError:
            raise RuleRuntimeError(f"cannot compare {java_string(left)} {symbol} {java_string(right)}") from None

    return safe


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": equal,
    "!=": lambda left, right: not equal(left, right),
    "<": _ordered(operator.lt, "<"),
    "<=": _ordered(operator.le, "<="),
    ">": _ordered(operator.gt, ">"),
    ">=": _ordered(operator.ge, ">="),
    "contains": contains,
    "~=": regex_matches,
}


class _Compiler:
    """Turns a parse tree into nested closures: ``compile(tree)(scope) -> value``."""

    def compile(self, node: Tree | Token) -> Compiled:
        if isinstance(node, Token):
            raise RuleSyntaxError(f"unexpected {node!r}")
        method = getattr(self, f"_{node.data}", None)
        if method is None:
            raise RuleSyntaxError(f"unsupported construct {node.data}")
        return method(*node.children)

    def _program(self, *statements: Tree) -> Compiled:
        compiled = [self.compile(s) for s in statements if isinstance(s, Tree)]
        if not compiled:
            return lambda scope: None
        if len(compiled) == 1:
            return compiled[0]

        def run(scope: Scope) -> Any:
            value = None
            for statement in compiled:
                value = statement(scope)
            return value

        return run

    def _block(self, program: Tree) -> Compiled:
        return self.compile(program)

    def _if_stmt(self, condition: Tree, then: Tree, otherwise: Tree | None = None) -> Compiled:
        test, when_true = self.compile(condition), self.compile(then)
        when_false = self.compile(otherwise) if otherwise is not None else None

        def run(scope: Scope) -> Any:
            if _truth(test(scope)):
                return when_true(scope)
            return when_false(scope) if when_false is not None else None

        return run

    def _ternary(self, condition: Tree, then: Tree, otherwise: Tree) -> Compiled:
        test, when_true, when_false = self.compile(condition), self.compile(then), self.compile(otherwise)
        return lambda scope: when_true(scope) if _truth(test(scope)) else when_false(scope)

    def _or_(self, left: Tree, right: Tree) -> Compiled:
        first, second = self.compile(left), self.compile(right)
        return lambda scope: _truth(first(scope)) or _truth(second(scope))

    def _and_(self, left: Tree, right: Tree) -> Compiled:
        first, second = self.compile(left), self.compile(right)
        return lambda scope: _truth(first(scope)) and _truth(second(scope))

    def _not_(self, operand: Tree) -> Compiled:
        inner = self.compile(operand)
        return lambda scope: not _truth(inner(scope))

    def _negate(self, operand: Tree) -> Compiled:
        inner = self.compile(operand)
        subtract = _arith("-")
        return lambda scope: subtract(0, inner(scope))

    def _compare(self, left: Tree, symbol: Token, right: Tree) -> Compiled:
        first, second, function = self.compile(left), self.compile(right), _COMPARISONS[str(symbol)]
        return lambda scope: function(first(scope), second(scope))

    def _arith(self, left: Tree, symbol: Token, right: Tree) -> Compiled:
        first, second, function = self.compile(left), self.compile(right), _arith(str(symbol))
        return lambda scope: function(first(scope), second(scope))

    def _method(self, target: Tree, name: Token, arguments: Tree) -> Compiled:
        receiver, method_name = self.compile(target), str(name)
        compiled_arguments = self._arguments(arguments)
        return lambda scope: invoke(receiver(scope), method_name, [argument(scope) for argument in compiled_arguments])

    def _property(self, target: Tree, name: Token) -> Compiled:
        receiver, property_name = self.compile(target), str(name)
        return lambda scope: get_property(receiver(scope), property_name)

    def _index(self, target: Tree, key: Tree) -> Compiled:
        receiver, compiled_key = self.compile(target), self.compile(key)
        return lambda scope: index(receiver(scope), compiled_key(scope))

    def _string(self, token: Token) -> Compiled:
        value = _unquote(str(token))
        return lambda scope: value

    def _number(self, token: Token) -> Compiled:
        value = _number(str(token))
        return lambda scope: value

    def _true(self) -> Compiled:
        return lambda scope: True

    def _false(self) -> Compiled:
        return lambda scope: False

    def _null(self) -> Compiled:
        return lambda scope: None

    def _variable(self, token: Token) -> Compiled:
        name = str(token)

        def read(scope: Scope) -> Any:
            try:
                return scope[name]
            except KeyError:
                raise RuleRuntimeError(f"unknown variable {name!r}") from None

        return read

    def _new(self, name: Tree, arguments: Tree) -> Compiled:
        class_name = ".".join(str(part) for part in name.children)
        compiled_arguments = self._arguments(arguments)
        construct(class_name, [])  # an unknown class is a load-time error, not a run-time one
        return lambda scope: construct(class_name, [argument(scope) for argument in compiled_arguments])

    def _list_(self, arguments: Tree) -> Compiled:
        compiled_arguments = self._arguments(arguments)
        return lambda scope: [argument(scope) for argument in compiled_arguments]

    def _arguments(self, arguments: Tree) -> list[Compiled]:
        return [self.compile(child) for child in arguments.children if isinstance(child, Tree | Token)]


def _parse(source: str) -> Tree:
    try:
        return _PARSER.parse(source)
    except UnexpectedInput as error:
        context = error.get_context(source, span=30).rstrip()
        raise RuleSyntaxError(
            f"syntax error at line {error.line}, column {error.column}:\n{context}", error.line
        ) from None
    except LarkError as error:
        raise RuleSyntaxError(f"syntax error: {error}") from None


def _header_equality(node: Tree) -> tuple[str, str] | None:
    """``request.getHeader("Name") == "value"`` (either way round) as ``("name", "value")``."""
    if node.data != "compare" or str(node.children[1]) != "==":
        return None
    for call, literal in ((node.children[0], node.children[2]), (node.children[2], node.children[0])):
        if (
            isinstance(call, Tree)
            and call.data == "method"
            and isinstance(literal, Tree)
            and literal.data == "string"
            and str(call.children[1]) == "getHeader"
            and call.children[0] == Tree("variable", [Token("NAME", "request")])
        ):
            arguments = call.children[2].children
            if len(arguments) == 1 and isinstance(arguments[0], Tree) and arguments[0].data == "string":
                return _unquote(str(arguments[0].children[0])).lower(), _unquote(str(literal.children[0]))
    return None


def header_guard(source: str) -> tuple[str, str] | None:
    """A header equality the condition cannot be true without, if it starts with one.

    ``request.getHeader("X-Trino-Source") == "airflow" && ...`` is false whenever the header is
    not ``airflow``, and evaluating that first comparison has no effects; so a rule set can skip
    such a rule by looking the header up, instead of running its condition.
    """
    node: Tree | Token = _parse(source)
    while isinstance(node, Tree) and (node.data == "and_" or (node.data == "program" and len(node.children) == 1)):
        node = node.children[0]
    return _header_equality(node) if isinstance(node, Tree) else None


@lru_cache(maxsize=4096)
def compile_program(source: str) -> Compiled:
    """Compile a condition or an action; raises ``RuleSyntaxError`` naming the line and column."""
    tree = _parse(source)
    try:
        return _Compiler().compile(tree)
    except RecursionError:
        raise RuleSyntaxError("expression nested too deeply") from None
    except RuleRuntimeError as error:
        raise RuleSyntaxError(str(error)) from None
