"""DuckDB's physical operators as Trino's plan nodes, with symbols and estimated rows.

The operator mapping:

- SEQ_SCAN of a table: TableScan; ScanFilter with the filters DuckDB pushed into it; ScanProject /
  ScanFilterProject with a computing projection above (one estimate per step, as Trino prints it);
- FILTER: Filter (FilterProject with a computing projection above);
- PROJECTION: Project when it computes something; one that only picks or reorders columns is
  folded away, as Trino's column pruning leaves no node for it;
- HASH_GROUP_BY, PERFECT_HASH_GROUP_BY, UNGROUPED_AGGREGATE, ...: Aggregate (split into PARTIAL
  and FINAL steps by the distribution);
- HASH_JOIN, NESTED_LOOP_JOIN, PIECEWISE_MERGE_JOIN, ...: InnerJoin, LeftJoin, RightJoin,
  FullJoin; SemiJoin for SEMI, ANTI and MARK joins; LeftJoin for a scalar subquery's SINGLE join;
  CROSS_PRODUCT (or a join without criteria): CrossJoin;
- ORDER_BY: Sort; TOP_N: TopN; LIMIT, STREAMING_LIMIT: Limit; WINDOW: Window; UNION: Union;
- COLUMN_DATA_SCAN, DUMMY_SCAN, EMPTY_RESULT, ...: Values;
- CTE and CTE_SCAN: the CTE's plan where it is read (Trino inlines WITH queries);
- INSERT, CREATE_TABLE_AS (and their BATCH_ forms): TableWriter under TableCommit; DELETE, UPDATE:
  MergeWriter under TableCommit;
- anything else: a node named after the operator (``UNNEST`` as ``Unnest``).

Rows are DuckDB's estimated cardinalities times the scale of the TPC-H tables below (see
tables.py), kept within what the inputs allow (an aggregation gives at most its input rows, a limit
at most its count, a projection its input's). Symbols are named as Trino names them (a column by
its name, an aggregate by its function, anything else ``expr``, made unique with ``_N``); the types
of computed symbols are inferred from DuckDB's expression text, and the output's are the result's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from trinosim.plans.costs import value_bytes
from trinosim.plans.duckdb_plan import Operator
from trinosim.plans.nodes import NAN, Kind, NodeIds, PlanNode, Symbol, SymbolAllocator
from trinosim.plans.tables import Tables

_REFERENCE = re.compile(r'^(?:#(\d+)|"([^"]+)"|([A-Za-z_][\w$]*))$')
_TOKEN = re.compile(r"'(?:[^']|'')*'|#\d+|\"[^\"]*\"|[A-Za-z_][\w$]*")
_CAST = re.compile(r"^(?:TRY_)?CAST\((.*) AS ([A-Za-z ]+(?:\(\d+(?:,\s*\d+)?\))?)\)$", re.IGNORECASE | re.DOTALL)
_CALL = re.compile(r'^"?([A-Za-z_][\w$]*|[-+*/%])"?\((.*)\)$', re.DOTALL)
_CONDITION = re.compile(
    r"^(.*?)\s*(IS NOT DISTINCT FROM|IS DISTINCT FROM|<>|!=|<=|>=|=|<|>)\s*(.*)$", re.IGNORECASE | re.DOTALL
)
_WINDOW_PARTS = re.compile(r"PARTITION BY (.*?)(?: ORDER BY (.*?))?(?: ROWS| RANGE| GROUPS|\)$)", re.DOTALL)
_WINDOW_ORDER = re.compile(r"OVER \((?:.*?)ORDER BY (.*?)(?: ROWS| RANGE| GROUPS|\)$)", re.DOTALL)

_DUCKDB_TYPES = {
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "INT": "integer",
    "SMALLINT": "smallint",
    "TINYINT": "tinyint",
    "HUGEINT": "bigint",
    "UBIGINT": "decimal(20,0)",
    "UINTEGER": "bigint",
    "USMALLINT": "integer",
    "UTINYINT": "smallint",
    "DOUBLE": "double",
    "FLOAT": "real",
    "REAL": "real",
    "BOOLEAN": "boolean",
    "VARCHAR": "varchar",
    "BLOB": "varbinary",
    "DATE": "date",
    "TIME": "time(6)",
    "TIMESTAMP": "timestamp(6)",
    "TIMESTAMP WITH TIME ZONE": "timestamp(6) with time zone",
    "INTERVAL": "interval day to second",
    "UUID": "uuid",
}
_INTEGERS = ("tinyint", "smallint", "integer", "bigint")
_BIGINT_FUNCTIONS = {"count", "count_star", "row_number", "rank", "dense_rank", "ntile", "approx_count_distinct"}
_DOUBLE_FUNCTIONS = {"avg", "stddev", "stddev_samp", "stddev_pop", "variance", "var_samp", "var_pop", "corr"}
_DOUBLE_FUNCTIONS |= {"percent_rank", "cume_dist", "sqrt", "ln", "log", "exp", "power", "pow", "random"}
_ARGUMENT_TYPED = {"min", "max", "first", "last", "any_value", "arbitrary", "mode", "abs", "round", "floor", "ceil"}
_ARGUMENT_TYPED |= {"lag", "lead", "first_value", "last_value", "nth_value"}
_VARCHAR_FUNCTIONS = {"concat", "upper", "lower", "substring", "substr", "trim", "ltrim", "rtrim", "replace", "lpad"}
_VARCHAR_FUNCTIONS |= {"rpad", "string_agg", "listagg", "strftime", "format", "printf", "reverse"}
_AGGREGATE_NAMES = {"count_star": "count", "sum_no_overflow": "sum", "first": "arbitrary", "any_value": "arbitrary"}
_JOIN_LABELS = {"INNER": "InnerJoin", "LEFT": "LeftJoin", "RIGHT": "RightJoin", "OUTER": "FullJoin", "FULL": "FullJoin"}


@dataclass
class Translated:
    node: PlanNode
    # The columns as DuckDB's parent operator sees them, by position (``#0``, ``#1``, ...).
    columns: list[Symbol]
    # How much the estimates below were scaled up (the largest TPC-H scale under this operator).
    scale: float = 1.0


@dataclass(frozen=True)
class WriteTarget:
    catalog: str
    schema: str
    table: str


def _number(value: float) -> float:
    return value if not math.isnan(value) else NAN


def duckdb_type(text: str) -> str:
    """A DuckDB type name (``DECIMAL(15,2)``, ``VARCHAR``) as Trino's."""
    upper = " ".join(text.upper().split())
    decimal = re.match(r"^(?:DECIMAL|NUMERIC)\((\d+),\s*(\d+)\)$", upper)
    if decimal:
        return f"decimal({decimal.group(1)},{decimal.group(2)})"
    return _DUCKDB_TYPES.get(upper, "varchar" if upper.startswith("VARCHAR") else upper.lower())


def _split_top(text: str, separator: str = ",") -> list[str]:
    """``text`` split at ``separator`` outside brackets and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


class Translator:
    """Translates one DuckDB plan; owns the plan's symbol names and node ids."""

    def __init__(
        self, tables: Tables, target: WriteTarget | None = None, aliases: dict[str, exp.Expression] | None = None
    ) -> None:
        self.tables = tables
        self.target = target
        # The statement's aliased select items (alias to expression): DuckDB's plan names them by alias.
        self.aliases = aliases or {}
        self.symbols = SymbolAllocator()
        self.ids = NodeIds()
        self._ctes: dict[str, Operator] = {}
        self._derived: set[int] = set()  # symbols an aggregation or a window computes

    # -- symbols and expressions -------------------------------------------------------------
    def symbol(self, hint: str, type_name: str, source_name: str = "") -> Symbol:
        return self.symbols.new(hint, type_name, value_bytes(type_name), source_name)

    @staticmethod
    def resolve(text: str, columns: list[Symbol]) -> Symbol | None:
        """The column ``text`` refers to (``#2``, ``name``, ``"name"``), if it is a plain reference."""
        match = _REFERENCE.match(text.strip())
        if not match:
            return None
        if match.group(1) is not None:
            position = int(match.group(1))
            return columns[position] if position < len(columns) else None
        name = match.group(2) or match.group(3)
        for column in columns:
            if column.source_name == name or column.name == name:
                return column
        return None

    @staticmethod
    def rewrite(text: str, columns: list[Symbol]) -> str:
        """DuckDB's expression with its column references written as the plan's symbols."""

        def replace(match: re.Match[str]) -> str:
            token = match.group(0)
            if token.startswith("'"):
                return token
            following = text[match.end() :].lstrip()[:1]
            if following == "(":
                return token
            found = Translator.resolve(token, columns)
            return found.name if found is not None else token

        return _TOKEN.sub(replace, text)

    def infer_type(self, text: str, columns: list[Symbol]) -> str:
        """The type of DuckDB's expression ``text`` over ``columns``, as well as the text tells."""
        text = text.strip()
        while wrapped(text):
            text = text[1:-1].strip()
        found = self.resolve(text, columns)
        if found is not None:
            return found.type
        cast = _CAST.match(text)
        if cast:
            return duckdb_type(cast.group(2))
        if re.fullmatch(r"-?\d+", text):
            return "integer"
        if re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", text, re.IGNORECASE):
            return "double"
        if text.startswith("'") and text.endswith("'"):
            return f"varchar({len(text) - 2})"
        upper = text.upper()
        predicate = re.search(r"\s(=|<>|!=|<|>|<=|>=|LIKE|ILIKE|IN|IS|BETWEEN|AND|OR)\s", f" {upper} ")
        if (predicate or upper.startswith("NOT ")) and not upper.startswith(("CASE", "CAST")):
            return "boolean"
        if upper.startswith("CASE"):
            then = re.search(r"\bTHEN\s+\(?(.*?)\)?\s+(?:WHEN|ELSE|END)\b", text, re.DOTALL)
            return self.infer_type(then.group(1), columns) if then else "varchar"
        call = _CALL.match(text)
        if call:
            function, arguments = call.group(1).lower(), _split_top(call.group(2))
            argument_type = self.infer_type(arguments[0], columns) if arguments else "unknown"
            if function in _BIGINT_FUNCTIONS:
                return "bigint"
            if function in _DOUBLE_FUNCTIONS:
                return f"decimal(38,{argument_type.split(',')[1]}" if argument_type.startswith("decimal") else "double"
            if function in ("sum", "sum_no_overflow"):
                if argument_type in _INTEGERS:
                    return "bigint"
                return f"decimal(38,{argument_type.split(',')[1]}" if argument_type.startswith("decimal") else "double"
            if function in _ARGUMENT_TYPED:
                return argument_type
            if function in _VARCHAR_FUNCTIONS:
                return "varchar"
            if function in ("+", "-", "*", "/", "%"):
                return self._arithmetic_type([self.infer_type(a, columns) for a in arguments], function)
        if "||" in text:
            return "varchar"
        operands = [o for o in re.split(r"\s[-+*/%]\s", text) if o.strip()]
        if len(operands) > 1:
            return self._arithmetic_type([self.infer_type(o, columns) for o in operands], "")
        for token in _TOKEN.findall(text):
            found = self.resolve(token, columns)
            if found is not None:
                return found.type
        return "varchar"

    @staticmethod
    def _arithmetic_type(types: list[str], operator: str) -> str:
        if any(t in ("double", "real") for t in types) or (operator == "/" and not all(t in _INTEGERS for t in types)):
            return "double"
        if all(t in _INTEGERS for t in types):
            return "bigint" if "bigint" in types else types[0] if types else "bigint"
        decimals = [t for t in types if t.startswith("decimal")]
        return decimals[0] if decimals else "double"

    # -- the walk ----------------------------------------------------------------------------
    def translate(self, operator: Operator) -> Translated:
        handler: Callable[[Operator], Translated] = {
            "SEQ_SCAN": self._scan,
            "TABLE_SCAN": self._scan,
            "FILTER": self._filter,
            "PROJECTION": self._projection,
            "HASH_GROUP_BY": self._aggregate,
            "PERFECT_HASH_GROUP_BY": self._aggregate,
            "PARTITIONED_AGGREGATE": self._aggregate,
            "UNGROUPED_AGGREGATE": self._aggregate,
            "SIMPLE_AGGREGATE": self._aggregate,
            "STREAMING_GROUP_BY": self._aggregate,
            "HASH_JOIN": self._join,
            "NESTED_LOOP_JOIN": self._join,
            "PIECEWISE_MERGE_JOIN": self._join,
            "BLOCKWISE_NL_JOIN": self._join,
            "IE_JOIN": self._join,
            "ASOF_JOIN": self._join,
            "LEFT_DELIM_JOIN": self._join,
            "RIGHT_DELIM_JOIN": self._join,
            "DELIM_JOIN": self._join,
            "CROSS_PRODUCT": self._join,
            "POSITIONAL_JOIN": self._join,
            "ORDER_BY": self._sort,
            "TOP_N": self._top_n,
            "LIMIT": self._limit,
            "STREAMING_LIMIT": self._limit,
            "LIMIT_PERCENT": self._limit,
            "WINDOW": self._window,
            "STREAMING_WINDOW": self._window,
            "UNION": self._union,
            "COLUMN_DATA_SCAN": self._values,
            "DUMMY_SCAN": self._values,
            "EMPTY_RESULT": self._values,
            "EXPRESSION_SCAN": self._values,
            "DELIM_SCAN": self._values,
            "CHUNK_SCAN": self._values,
            "CTE": self._cte,
            "MATERIALIZED_CTE": self._cte,
            "CTE_SCAN": self._cte_scan,
            "INSERT": self._write,
            "BATCH_INSERT": self._write,
            "CREATE_TABLE_AS": self._write,
            "BATCH_CREATE_TABLE_AS": self._write,
            "DELETE": self._write,
            "UPDATE": self._write,
            "MERGE_INTO": self._write,
        }.get(operator.name, self._other)
        if handler is self._scan and "Table" not in operator.info:
            handler = self._other
        return handler(operator)

    def _children(self, operator: Operator) -> list[Translated]:
        return [self.translate(child) for child in operator.children]

    @staticmethod
    def _rows(operator: Operator, scale: float, fallback: float) -> float:
        estimate = operator.cardinality
        return fallback if math.isnan(estimate) else estimate * scale

    # -- scans, filters, projections ---------------------------------------------------------
    def _scan(self, operator: Operator) -> Translated:
        table = self.tables.get(operator.info["Table"])
        columns = []
        details = []
        for name in operator.items("Projections"):
            column = table.columns.get(name)
            type_name = column.type if column else "varchar"
            symbol = self.symbols.new(name, type_name, column.value_bytes if column else value_bytes(type_name), name)
            columns.append(symbol)
            details.append(f"{symbol.name} := {table.catalog}:{name}")
        filters = [f for f in operator.items("Filters") if not f.startswith("optional:")]
        rows = [table.rows]
        descriptor = {"table": table.handle}
        name = "TableScan"
        if filters:
            name = "ScanFilter"
            descriptor["filterPredicate"] = " AND ".join(self.rewrite(f, columns) for f in filters)
            rows.append(self._rows(operator, table.scale, table.rows))
        node = PlanNode(self.ids.new(), name, Kind.SCAN, descriptor, columns, details, rows=rows)
        node.predicates = filters
        node.table = (table.catalog, table.schema, table.table)
        return Translated(node, columns, table.scale)

    def _filter(self, operator: Operator) -> Translated:
        (child,) = self._children(operator)[:1]
        predicate = " AND ".join(operator.items("Expression") or operator.items("Expressions"))
        predicate = self.rewrite(predicate, child.columns)
        rows = self._rows(operator, child.scale, child.node.output_rows)
        below = child.node
        if below.kind is Kind.SCAN and below.name == "TableScan":
            below.name = "ScanFilter"
            below.descriptor["filterPredicate"] = predicate
            below.predicates = operator.items("Expression") or operator.items("Expressions")
            below.rows.append(rows)
            return Translated(below, child.columns, child.scale)
        node = PlanNode(
            self.ids.new(),
            "Filter",
            Kind.FILTER_PROJECT,
            {"filterPredicate": predicate},
            list(below.outputs),
            children=[below],
            rows=[rows],
        )
        return Translated(node, child.columns, child.scale)

    def _projection(self, operator: Operator) -> Translated:
        (child,) = self._children(operator)[:1]
        columns: list[Symbol] = []
        assignments: list[str] = []
        for item in operator.items("Projections"):
            if item.startswith("__internal_"):  # DuckDB's own compress/decompress wrappers
                inner = _CALL.match(item)
                item = inner.group(2) if inner else item
            found = self.resolve(item, child.columns)
            if found is None and item in self.aliases:
                # DuckDB prints an aliased expression by its alias: the statement says what it is.
                found, item = self._aliased(self.aliases[item], child.columns, columns)
            if found is not None:
                columns.append(found)
                continue
            symbol = self.symbol("expr", self.infer_type(item, child.columns))
            columns.append(symbol)
            assignments.append(f"{symbol.name} := {self.rewrite(item, child.columns)}")
        node_id = self.ids.new()
        if not assignments:  # only picks columns: Trino's pruning leaves no node for it
            return Translated(child.node, columns, child.scale)
        rows = child.node.output_rows  # a projection keeps its input's rows
        below = child.node
        if below.name in ("TableScan", "ScanFilter", "Filter"):
            below.name = {"TableScan": "ScanProject", "ScanFilter": "ScanFilterProject", "Filter": "FilterProject"}[
                below.name
            ]
            below.id = node_id
            below.outputs = _unique(columns)
            below.details = assignments + below.details
            below.rows.append(rows)
            return Translated(below, columns, child.scale)
        node = PlanNode(
            node_id,
            "Project",
            Kind.FILTER_PROJECT,
            {},
            _unique(columns),
            assignments,
            children=[below],
            rows=[rows],
        )
        return Translated(node, columns, child.scale)

    def _aliased(
        self, expression: exp.Expression, below: list[Symbol], taken: list[Symbol]
    ) -> tuple[Symbol | None, str]:
        """The column an aliased select item is, or the text of what it computes."""
        if isinstance(expression, exp.Column):
            return self.resolve(expression.name, below), expression.name
        if expression.find(exp.Window, exp.AggFunc) is not None:
            # Computed below (by a window or an aggregation): the first such column not yet picked.
            for column in below:
                if id(column) in self._derived and column not in taken:
                    return column, column.name
        return None, expression.sql(dialect="trino")

    # -- aggregations ------------------------------------------------------------------------
    def _aggregate(self, operator: Operator) -> Translated:
        (child,) = self._children(operator)[:1]
        keys = []
        for group in operator.items("Groups"):
            for item in _split_top(group):
                found = self.resolve(item, child.columns)
                keys.append(found if found is not None else self.symbol("expr", self.infer_type(item, child.columns)))
        aggregates: list[Symbol] = []
        details, partial_outputs, partial_details, final_details = [], [], [], []
        for item in [a for raw in operator.items("Aggregates") for a in _split_top(raw)]:
            call = _CALL.match(item)
            function = call.group(1).lower() if call else "expr"
            shown = _AGGREGATE_NAMES.get(function, function)
            arguments = self.rewrite(call.group(2), child.columns) if call else item
            if function == "count_star":
                arguments = "*"
            type_name = self.infer_type(item, child.columns)
            symbol = self.symbol(shown, type_name)
            partial = self.symbol(shown, type_name)
            self._derived.add(id(symbol))
            aggregates.append(symbol)
            details.append(f"{symbol.name} := {shown}({arguments})")
            partial_outputs.append(partial)
            partial_details.append(f"{partial.name} := {shown}({arguments})")
            final_details.append(f"{symbol.name} := {shown}({partial.name})")
        input_rows = child.node.output_rows
        rows = self._rows(operator, child.scale, 1.0 if not keys else input_rows)
        if not keys:
            rows = 1.0
        elif not math.isnan(input_rows):
            rows = min(rows, input_rows)
        node = PlanNode(
            self.ids.new(),
            "Aggregate",
            Kind.AGGREGATE,
            {},
            _unique(keys + aggregates),
            details,
            children=[child.node],
            rows=[rows],
            keys=keys,
            final_details=final_details,
            partial_outputs=partial_outputs,
            partial_details=partial_details,
        )
        return Translated(node, keys + aggregates, child.scale)

    # -- joins -------------------------------------------------------------------------------
    def _join(self, operator: Operator) -> Translated:
        children = self._children(operator)
        if len(children) < 2:
            return self._other(operator, children)
        left, right = children[0], children[-1]
        duck_type = str(operator.info.get("Join Type", "INNER" if operator.name != "CROSS_PRODUCT" else "CROSS"))
        duck_type = duck_type.upper()
        criteria, filters, left_keys, right_keys = [], [], [], []
        for condition in operator.items("Conditions"):
            match = _CONDITION.match(condition)
            if not match:
                filters.append(self.rewrite(condition, left.columns + right.columns))
                continue
            lhs, op, rhs = match.groups()
            left_symbol, right_symbol = self.resolve(lhs, left.columns), self.resolve(rhs, right.columns)
            lhs_text = left_symbol.name if left_symbol else self.rewrite(lhs, left.columns)
            rhs_text = right_symbol.name if right_symbol else self.rewrite(rhs, right.columns)
            if op.upper() in ("=", "IS NOT DISTINCT FROM") and left_symbol and right_symbol:
                criteria.append(f"({lhs_text} = {rhs_text})")
                left_keys.append(left_symbol)
                right_keys.append(right_symbol)
            else:
                filters.append(f"({lhs_text} {op} {rhs_text})")
        scale = max(left.scale, right.scale)
        product = left.node.output_rows * right.node.output_rows
        rows = self._rows(operator, scale, product)
        if not math.isnan(product):
            rows = min(rows, product)
        if duck_type in ("SEMI", "ANTI", "MARK", "RIGHT_SEMI", "RIGHT_ANTI"):
            return self._semi_join(duck_type, left, right, criteria, left_keys, right_keys, rows, scale)
        if duck_type == "CROSS" or (not criteria and not filters):
            name, join_type = "CrossJoin", "CROSS"
            descriptor: dict[str, str] = {}
        else:
            join_type = {"OUTER": "FULL", "SINGLE": "LEFT"}.get(duck_type, duck_type)
            if join_type not in ("INNER", "LEFT", "RIGHT", "FULL"):
                join_type = "INNER"
            name = _JOIN_LABELS[join_type]
            descriptor = {"criteria": " AND ".join(criteria)}
            if filters:
                descriptor["filter"] = " AND ".join(filters)
            descriptor["hash"] = "[]"
        columns = left.columns + right.columns
        node = PlanNode(
            self.ids.new(),
            name,
            Kind.JOIN,
            descriptor,
            _unique(left.node.outputs + right.node.outputs),
            children=[left.node, right.node],
            rows=[rows],
            keys=left_keys,
            build_keys=right_keys,
            join_type=join_type,
        )
        return Translated(node, columns, scale)

    def _semi_join(
        self,
        duck_type: str,
        left: Translated,
        right: Translated,
        criteria: list[str],
        left_keys: list[Symbol],
        right_keys: list[Symbol],
        rows: float,
        scale: float,
    ) -> Translated:
        source, filtering = (right, left) if duck_type.startswith("RIGHT_") else (left, right)
        source_keys, filtering_keys = (
            (right_keys, left_keys) if duck_type.startswith("RIGHT_") else (left_keys, right_keys)
        )
        marker = self.symbol("expr", "boolean")
        pairs = [f"{s.name} = {f.name}" for s, f in zip(source_keys, filtering_keys, strict=True)]
        node = PlanNode(
            self.ids.new(),
            "SemiJoin",
            Kind.JOIN,
            {"criteria": " AND ".join(pairs) or " AND ".join(criteria), "hash": "[]"},
            _unique([*source.node.outputs, marker]),
            children=[source.node, filtering.node],
            rows=[min(rows, source.node.output_rows) if not math.isnan(source.node.output_rows) else rows],
            keys=source_keys,
            build_keys=filtering_keys,
            join_type="SEMI",
        )
        columns = source.columns + ([marker] if duck_type == "MARK" else [])
        return Translated(node, columns, scale)

    # -- ordering, limits, windows -----------------------------------------------------------
    def _order_by(self, operator: Operator, columns: list[Symbol]) -> str:
        items = []
        for item in [i for raw in operator.items("Order By") for i in _split_top(raw)]:
            nulls_given = re.search(r"\s+NULLS (FIRST|LAST)$", item, re.IGNORECASE)
            expression = item[: nulls_given.start()] if nulls_given else item
            direction_given = re.search(r"\s+(ASC|DESC)$", expression, re.IGNORECASE)
            direction = direction_given.group(1).upper() if direction_given else "ASC"
            expression = expression[: direction_given.start()] if direction_given else expression
            default_nulls = "LAST" if direction == "ASC" else "FIRST"
            nulls = f"NULLS {nulls_given.group(1).upper() if nulls_given else default_nulls}"
            found = self.resolve(expression, columns)
            items.append(f"{found.name if found else self.rewrite(expression, columns)} {direction} {nulls}")
        return "[" + ", ".join(items) + "]"

    def _sort(self, operator: Operator) -> Translated:
        (child,) = self._children(operator)[:1]
        order_by = self._order_by(operator, child.columns)
        node = PlanNode(
            self.ids.new(),
            "Sort",
            Kind.SORT,
            {"orderBy": order_by},
            list(child.node.outputs),
            children=[child.node],
            rows=[self._rows(operator, child.scale, child.node.output_rows)],
            order_by=order_by,
        )
        return Translated(node, child.columns, child.scale)

    @staticmethod
    def _count(operator: Operator, key: str) -> int:
        try:
            return int(float(str(operator.info.get(key, "0"))))
        except ValueError:
            return 0

    def _top_n(self, operator: Operator) -> Translated:
        (child,) = self._children(operator)[:1]
        count = self._count(operator, "Top") + self._count(operator, "Offset")
        order_by = self._order_by(operator, child.columns)
        node = PlanNode(
            self.ids.new(),
            "TopN",
            Kind.TOPN,
            {"count": str(count), "orderBy": order_by},
            list(child.node.outputs),
            children=[child.node],
            rows=[_at_most(float(count), child.node.output_rows)],
            count=count,
            order_by=order_by,
        )
        return Translated(node, child.columns, child.scale)

    def _limit(self, operator: Operator) -> Translated:
        (child,) = self._children(operator)[:1]
        count = self._count(operator, "Limit") + self._count(operator, "Offset")
        node = PlanNode(
            self.ids.new(),
            "Limit",
            Kind.LIMIT,
            {"count": str(count), "withTies": "", "inputPreSortedBy": "[]"},
            list(child.node.outputs),
            children=[child.node],
            rows=[_at_most(float(count), child.node.output_rows)],
            count=count,
        )
        return Translated(node, child.columns, child.scale)

    def _window(self, operator: Operator) -> Translated:
        (child,) = self._children(operator)[:1]
        functions = [f for raw in operator.items("Projections") for f in _split_top(raw)]
        partition: list[Symbol] = []
        descriptor: dict[str, str] = {}
        details = []
        new_columns = []
        for position, function in enumerate(functions):
            parts = _WINDOW_PARTS.search(function)
            if position == 0 and parts:
                for item in _split_top(parts.group(1)):
                    found = self.resolve(item, child.columns)
                    if found is not None:
                        partition.append(found)
                descriptor["partitionBy"] = "[" + ", ".join(s.name for s in partition) + "]"
            order = _WINDOW_ORDER.search(function)
            if position == 0 and order:
                fake = Operator("ORDER_BY", {"Order By": order.group(1)})
                descriptor["orderBy"] = self._order_by(fake, child.columns)
            call = re.match(r"^([A-Za-z_]\w*)\(", function)
            hint = call.group(1).lower() if call else "expr"
            symbol = self.symbol(hint, self.infer_type(function.split(" OVER ", 1)[0], child.columns))
            self._derived.add(id(symbol))
            new_columns.append(symbol)
            details.append(f"{symbol.name} := {self.rewrite(function, child.columns)}")
        descriptor["hash"] = "[]"
        node = PlanNode(
            self.ids.new(),
            "Window",
            Kind.WINDOW,
            descriptor,
            _unique(child.node.outputs + new_columns),
            details,
            children=[child.node],
            rows=[self._rows(operator, child.scale, child.node.output_rows)],
            keys=partition,
        )
        return Translated(node, child.columns + new_columns, child.scale)

    # -- sets, values, CTEs ------------------------------------------------------------------
    def _union(self, operator: Operator) -> Translated:
        children = self._children(operator)
        first = children[0].columns if children else []
        columns = [self.symbol(c.source_name or c.name, c.type, c.source_name) for c in first]
        rows = sum((c.node.output_rows for c in children), 0.0)
        node = PlanNode(
            self.ids.new(),
            "Union",
            Kind.UNION,
            {},
            columns,
            children=[c.node for c in children],
            rows=[rows],
        )
        return Translated(node, columns, max((c.scale for c in children), default=1.0))

    def _values(self, operator: Operator) -> Translated:
        for child in operator.children:
            self.translate(child)
        rows = operator.cardinality
        if math.isnan(rows):
            rows = 0.0 if operator.name == "EMPTY_RESULT" else 1.0
        node = PlanNode(self.ids.new(), "Values", Kind.VALUES, {}, [], rows=[rows])
        return Translated(node, [])

    def _cte(self, operator: Operator) -> Translated:
        if len(operator.children) < 2:
            return self._other(operator)
        index = str(operator.info.get("Table Index", ""))
        self._ctes[index] = operator.children[0]
        return self.translate(operator.children[1])

    def _cte_scan(self, operator: Operator) -> Translated:
        definition = self._ctes.get(str(operator.info.get("CTE Index", "")))
        if definition is None:
            return self._values(operator)
        return self.translate(definition)

    # -- writes ------------------------------------------------------------------------------
    def _write(self, operator: Operator) -> Translated:
        children = self._children(operator)
        child = children[0] if children else self._values(Operator("DUMMY_SCAN", {}))
        target = self.target
        handle = f"{target.catalog}:{target.schema}:{target.table}" if target else ""
        is_merge = operator.name in ("DELETE", "UPDATE", "MERGE_INTO")
        writer_outputs = [self.symbol("partialrows", "bigint"), self.symbol("fragment", "varbinary")]
        writer = PlanNode(
            self.ids.new(),
            "MergeWriter" if is_merge else "TableWriter",
            Kind.WRITER,
            {"table": handle} if is_merge else {},
            writer_outputs,
            [] if is_merge else [f"{c.source_name or c.name} := {c.name}" for c in child.columns],
            children=[child.node],
            rows=[child.node.output_rows],
        )
        rows = self.symbol("rows", "bigint")
        commit = PlanNode(
            self.ids.new(),
            "TableCommit",
            Kind.COMMIT,
            {"target": handle},
            [rows],
            children=[writer],
            rows=[1.0],
        )
        return Translated(commit, [rows], child.scale)

    # -- the rest ----------------------------------------------------------------------------
    def _other(self, operator: Operator, children: list[Translated] | None = None) -> Translated:
        children = self._children(operator) if children is None else children
        columns = children[0].columns if children else []
        fallback = children[0].node.output_rows if children else 1.0
        scale = max((c.scale for c in children), default=1.0)
        name = "".join(part.capitalize() for part in operator.name.split("_")) or "Unknown"
        node = PlanNode(
            self.ids.new(),
            name,
            Kind.OTHER,
            {},
            list(children[0].node.outputs) if children else [],
            children=[c.node for c in children],
            rows=[self._rows(operator, scale, fallback)],
        )
        return Translated(node, columns, scale)


def prune_join_outputs(root: PlanNode) -> None:
    """Keep only the join outputs something above uses, as Trino's column pruning does (DuckDB's
    joins pass every column up, and a projection above picks)."""

    def referenced(node: PlanNode) -> set[str]:
        texts = list(node.descriptor.values()) + node.details
        return {token for text in texts for token in _TOKEN.findall(text)} | {
            s.name for s in node.keys + node.build_keys
        }

    def walk(node: PlanNode, required: set[str]) -> None:
        if node.kind is Kind.JOIN:
            node.outputs = [s for s in node.outputs if s.name in required] or node.outputs[:1]
        below = (required if node.kind is not Kind.OUTPUT else set()) | referenced(node)
        below |= {s.name for s in node.outputs}
        for child in node.children:
            walk(child, below)

    walk(root, {s.name for s in root.outputs})


def wrapped(text: str) -> bool:
    """Whether ``text`` is one parenthesised expression: ``(a + b)``, not ``(a) + (b)``."""
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth, quote = 0, ""
    for position, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0 and position != len(text) - 1:
                return False
    return depth == 0


def _at_most(limit: float, rows: float) -> float:
    return limit if math.isnan(rows) else min(limit, rows)


def _unique(symbols: list[Symbol]) -> list[Symbol]:
    seen: set[int] = set()
    found = []
    for symbol in symbols:
        if id(symbol) not in seen:
            seen.add(id(symbol))
            found.append(symbol)
    return found
