"""Routing rules from a YAML file, in trino-gateway's format, reloaded when the file changes.

A file holds one rule per YAML document::

    ---
    name: "airflow"
    description: "if query from airflow, route to etl group"
    priority: 0
    condition: 'request.getHeader("X-Trino-Source") == "airflow"'
    actions:
      - 'result.put("routingGroup", "etl")'

Rules run in ascending ``priority`` (rules without one run last, in file order, as trino-gateway's
documentation says); every rule whose condition holds fires, so the last ``routingGroup`` written
wins. Composite rules (``compositeRuleType`` ``ActivationRuleGroup``, ``ConditionalRuleGroup``,
``UnitRuleGroup`` with ``composingRules``) behave as easy-rules' groups. A rule that fails while
running is skipped and logged, and what it wrote to ``result`` is undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.config import duration_seconds
from gateway.routing.estimates import EstimateUse
from gateway.routing.rules.language import Compiled, RuleSyntaxError, compile_program, header_guard
from gateway.routing.rules.request import RuleRequest
from gateway.routing.rules.values import RESULTS_ROUTING_GROUP_KEY, RuleRuntimeError

log = logging.getLogger("gateway.routing.rules")

LAST = 2**31 - 1  # Java's Integer.MAX_VALUE: the documented priority of a rule that names none


class RulesLoadError(ValueError):
    """A rules file that cannot be used, with the file, the rule and the reason; ``line`` is where in
    the text (1-based), when that can be told."""

    def __init__(
        self, message: str, line: int | None = None, source: str | None = None, source_line: int | None = None
    ) -> None:
        super().__init__(message)
        self.line = line
        # A condition or action that does not compile, and its line that does not: parse_rules finds it in the text.
        self.source = source
        self.source_line = source_line


class _RuleDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1)
    description: str = ""
    priority: int = LAST
    condition: str = "true"
    actions: list[str] = Field(default_factory=list)
    composite_rule_type: Literal["ActivationRuleGroup", "ConditionalRuleGroup", "UnitRuleGroup"] | None = Field(
        None, alias="compositeRuleType"
    )
    composing_rules: list[_RuleDocument] = Field(default_factory=list, alias="composingRules")

    @field_validator("condition", mode="before")
    @classmethod
    def _condition(cls, value: Any) -> Any:
        if isinstance(value, bool):  # ``condition: true`` written without quotes
            return "true" if value else "false"
        return value

    @field_validator("actions", mode="before")
    @classmethod
    def _actions(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return value


@dataclass
class Outcome:
    """What one evaluation of the rules decided."""

    result: dict[str, Any]
    fired: list[str] = field(default_factory=list)
    decided_by: str | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)
    estimate: EstimateUse | None = None
    """The query's estimate, if a rule read it."""

    @property
    def routing_group(self) -> str | None:
        group = self.result.get(RESULTS_ROUTING_GROUP_KEY)
        return str(group) if group not in (None, "") else None

    @property
    def max_running(self) -> int | None:
        """``result.put("maxRunning", n)``: how many queries the user may run at once (n >= 1)."""
        value = self.result.get("maxRunning")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
            return None
        return int(value)

    @property
    def failover(self) -> bool | None:
        """``result.put("failover", false)``: the query is never sent again to another backend."""
        value = self.result.get("failover")
        return value if isinstance(value, bool) else None

    @property
    def cache_ttl(self) -> float | None:
        """``result.put("cacheTtl", "5m")`` (or seconds): the query's result is cached that long; ``"0s"``:
        never cached (docs/cache.md). Anything else: as if it were not there."""
        value = self.result.get("cacheTtl")
        if isinstance(value, bool) or value is None:
            return None
        try:
            seconds = duration_seconds(value)
        except ValueError:
            return None
        return seconds if seconds >= 0 else None

    @property
    def queue_weight(self) -> float | None:
        """``result.put("queueWeight", w)``: the user's share of starts while queries wait (w > 0)."""
        value = self.result.get("queueWeight")
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            return None
        return float(value)


class Rule:
    """A rule with a condition and actions."""

    def __init__(self, name: str, description: str, priority: int, condition: str, actions: list[str]) -> None:
        self.name = name
        self.description = description
        self.priority = priority
        self.condition_source = condition
        self.action_sources = actions
        self._condition = _compile(name, "condition", condition)
        self.guard = header_guard(condition)
        self._actions = [_compile(name, f"action {n}", action) for n, action in enumerate(actions, 1)]

    def matches(self, scope: dict[str, Any]) -> bool:
        value = self._condition(scope)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise RuleRuntimeError(f"the condition gave {value!r}, not true or false")
        return value

    def fire(self, scope: dict[str, Any]) -> list[str]:
        for action in self._actions:
            action(scope)
        return [self.name]

    def apply(self, scope: dict[str, Any]) -> list[str]:
        return self.fire(scope) if self.matches(scope) else []


class RuleGroup:
    """easy-rules' composite rules, over rules that may themselves be groups."""

    def __init__(self, kind: str, name: str, description: str, priority: int, rules: list[Rule | RuleGroup]) -> None:
        if not rules:
            raise RulesLoadError(f"rule {name!r}: {kind} needs composingRules")
        self.kind = kind
        self.name = name
        self.description = description
        self.priority = priority
        self.rules = sorted(rules, key=lambda rule: rule.priority)

    def matches(self, scope: dict[str, Any]) -> bool:
        if self.kind == "UnitRuleGroup":
            return all(rule.matches(scope) for rule in self.rules)
        return any(rule.matches(scope) for rule in self.rules)

    def fire(self, scope: dict[str, Any]) -> list[str]:
        return [name for rule in self.rules for name in rule.fire(scope)]

    def apply(self, scope: dict[str, Any]) -> list[str]:
        if self.kind == "ActivationRuleGroup":
            # The first composing rule (by priority) that applies fires; the others are skipped.
            for rule in self.rules:
                fired = rule.apply(scope)
                if fired:
                    return fired
            return []
        if self.kind == "ConditionalRuleGroup":
            # The highest-priority rule is the gate; if it fires, every other applicable rule fires.
            primary, *others = self.rules
            fired = primary.apply(scope)
            if not fired:
                return []
            for rule in others:
                fired.extend(rule.apply(scope))
            return fired
        return self.fire(scope) if self.matches(scope) else []


def _compile(rule: str, part: str, source: str) -> Compiled:
    try:
        return compile_program(source)
    except RuleSyntaxError as error:
        raise RulesLoadError(f"rule {rule!r}, {part}: {error}", source=source, source_line=error.line) from None


def _build(document: _RuleDocument) -> Rule | RuleGroup:
    if document.composite_rule_type is not None:
        return RuleGroup(
            document.composite_rule_type,
            document.name,
            document.description,
            document.priority,
            [_build(child) for child in document.composing_rules],
        )
    if document.composing_rules:
        raise RulesLoadError(f"rule {document.name!r}: composingRules needs a compositeRuleType")
    return Rule(document.name, document.description, document.priority, document.condition, document.actions)


class RuleSet:
    """Rules in the order they fire.

    Most rules start with a header test (``request.getHeader("X-Trino-Source") == "airflow" && ...``);
    those are indexed by that header's value, so a request runs only the rules it can match and a
    thousand such rules cost a dictionary lookup, not a thousand conditions.
    """

    def __init__(self, rules: Iterable[Rule | RuleGroup]) -> None:
        # sorted() is stable: rules of equal priority keep their order in the file.
        self.rules = sorted(rules, key=lambda rule: rule.priority)
        self._unguarded: list[int] = []
        self._by_header: dict[str, dict[str, list[int]]] = {}
        for position, rule in enumerate(self.rules):
            guard = rule.guard if isinstance(rule, Rule) else None
            if guard is None:
                self._unguarded.append(position)
            else:
                header, value = guard
                self._by_header.setdefault(header, {}).setdefault(value, []).append(position)

    def __len__(self) -> int:
        return len(self.rules)

    def _candidates(self, variables: dict[str, Any]) -> list[int]:
        request = variables.get("request")
        if not self._by_header or not isinstance(request, RuleRequest):
            return list(range(len(self.rules)))
        matched: list[int] = []
        for header, by_value in self._by_header.items():
            value = request.header(header)
            if value is not None and value in by_value:
                matched.extend(by_value[value])
        return sorted(self._unguarded + matched) if matched else self._unguarded

    def evaluate(self, variables: dict[str, Any]) -> Outcome:
        """Run every rule against ``variables`` (request, state, result, ...)."""
        result: dict[str, Any] = variables["result"]
        outcome = Outcome(result)
        for position in self._candidates(variables):
            rule = self.rules[position]
            before: dict[str, Any] | None = None
            try:
                if isinstance(rule, Rule):
                    if not rule.matches(variables):
                        continue
                    before = dict(result)
                    fired = rule.fire(variables)
                else:
                    before = dict(result)
                    fired = rule.apply(variables)
            except (RuleRuntimeError, RecursionError) as error:
                if before is not None:
                    result.clear()
                    result.update(before)
                outcome.failed.append((rule.name, str(error)))
                log.warning("routing rule %r failed and was skipped: %s", rule.name, error)
                continue
            if fired:
                outcome.fired.extend(fired)
                if result.get(RESULTS_ROUTING_GROUP_KEY) != (before or {}).get(RESULTS_ROUTING_GROUP_KEY):
                    outcome.decided_by = fired[-1]
        return outcome


def parse_rules(text: str, source: str = "rules") -> RuleSet:
    """The rules of a rules file's ``text``; a RulesLoadError names the document, the rule and the reason
    (``source``: the file, for messages), and has the line where the text goes wrong when it can be told."""
    rules: list[Rule | RuleGroup] = []
    names: set[str] = set()
    for number, (node, document) in enumerate(_documents(text, source), 1):
        where = f"{source}: document {number}"
        if not isinstance(document, dict):
            raise RulesLoadError(f"{where}: a rule must be a mapping (name, condition, actions)", _line(node))
        try:
            parsed = _RuleDocument.model_validate(document)
        except ValidationError as error:
            problems = error.errors()
            described = "; ".join(
                f"{'.'.join(str(p) for p in problem['loc']) or 'rule'}: "
                + ("unknown key" if problem["type"] == "extra_forbidden" else problem["msg"])
                for problem in problems
            )
            raise RulesLoadError(f"{where}: {described}", _line(_node_at(node, problems[0]["loc"]))) from None
        except RecursionError:
            raise RulesLoadError(f"{where}: composing rules nested too deeply", _line(node)) from None
        if parsed.name in names:
            line = _line(_node_at(node, ("name",)))
            raise RulesLoadError(f"{where}: rule name {parsed.name!r} appears twice", line)
        names.add(parsed.name)
        try:
            rules.append(_build(parsed))
        except RulesLoadError as error:
            raise RulesLoadError(f"{where}: {error}", _line_of_source(node, error)) from None
        except RecursionError:
            raise RulesLoadError(f"{where}: composing rules nested too deeply", _line(node)) from None
    return RuleSet(rules)


def _documents(text: str, source: str) -> list[tuple[yaml.Node, Any]]:
    """Each YAML document of ``text`` that is not empty: its node (where it stands in the text) and its value."""
    documents = []
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # (which refuses unprintable characters at once)
        while loader.check_node():
            node = loader.get_node()
            document = loader.construct_document(node)
            if document is not None:
                documents.append((node, document))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        if mark is not None:
            line = mark.line + 1
        elif isinstance(error, yaml.reader.ReaderError):
            line = text.count("\n", 0, error.position) + 1
        else:
            line = None
        raise RulesLoadError(f"{source}: not valid YAML: {error}", line) from None
    except RecursionError:
        raise RulesLoadError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return documents


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _node_at(node: yaml.Node, path: Iterable[str | int]) -> yaml.Node:
    """The node at ``path`` (keys and indexes, as pydantic locates a problem) below ``node``, or the
    last one found on the way."""
    for step in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if getattr(key, "value", None) == str(step)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            child = node.value[step]
        if child is None:
            break
        node = child
    return node


def _line_of_source(document: yaml.Node, error: RulesLoadError) -> int:
    """The line of the condition or action that did not compile, else where the rule's document starts."""
    if error.source is not None:
        pending = [document]
        while pending:
            node = pending.pop(0)
            if isinstance(node, yaml.ScalarNode) and node.value == error.source:
                if node.style == "|" and error.source_line is not None:
                    # A literal block: its first line is the one after the ``|``, and its lines are kept.
                    return node.start_mark.line + 1 + error.source_line
                return _line(node)
            if isinstance(node, yaml.MappingNode):
                pending.extend(value for _, value in node.value)
            elif isinstance(node, yaml.SequenceNode):
                pending.extend(node.value)
    return _line(document)


def read_rules(path: str | Path) -> tuple[str, RuleSet]:
    """The text of a rules file and its rules."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise RulesLoadError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise RulesLoadError(f"{path}: not UTF-8 text") from None
    return text, parse_rules(text, str(path))


def load_rules(path: str | Path) -> RuleSet:
    return read_rules(path)[1]


def _write_atomically(path: Path, text: str) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp makes the file private (0600): the rules file keeps the permissions it had.
        with contextlib.suppress(OSError):
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class RulesFile:
    """The rules of one file; ``check()`` reloads them when the file changed.

    A change that does not load (bad YAML, a syntax error, a missing file) keeps the rules in
    use and is logged once per change, with the reason; ``last_error`` tells the admin API.
    """

    def __init__(self, path: str | Path, refresh_seconds: float = 1.0) -> None:
        self.path = Path(path)
        self.refresh_seconds = refresh_seconds
        self.text, self.rules = read_rules(self.path)
        """The text the rules in use were read from."""
        self._signature = _signature(self.path)
        self.last_error: str | None = None
        self.reloads = 0
        # The watcher's check and a replace through the admin API run in threads: one at a time.
        self._lock = threading.Lock()

    def check(self) -> bool:
        """Reload if the file changed; True when new rules are in use."""
        with self._lock:
            return self._check()

    def _check(self) -> bool:
        signature = _signature(self.path)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            text, rules = read_rules(self.path)
        except RulesLoadError as error:
            self.last_error = str(error)
            log.error("routing rules not reloaded, the previous %d rules stay in use: %s", len(self.rules), error)
            return False
        self.text, self.rules = text, rules
        self.last_error = None
        self.reloads += 1
        log.info("routing rules reloaded from %s: %d rules", self.path, len(rules))
        return True

    def replace(self, text: str) -> str | None:
        """Make ``text`` the rules file and its rules the ones in use here at once (other workers and
        nodes on the same file take them at their next check). Text that does not load raises
        RulesLoadError and nothing is written. The file is replaced whole (a temporary file beside
        it, then a rename), so a reader sees the old text or the new, never a part. Returns what the
        file held before (None if it could not be read); raises OSError if it cannot be written."""
        rules = parse_rules(text, os.fspath(self.path))
        with self._lock:
            try:
                before: str | None = self.path.read_text()
            except (OSError, UnicodeDecodeError):
                before = None
            _write_atomically(self.path.resolve(), text)
            self.text, self.rules, self._signature = text, rules, _signature(self.path)
            self.last_error = None
            self.reloads += 1
        log.info("routing rules replaced through the admin API in %s: %d rules", self.path, len(rules))
        return before

    def adopt(self, text: str) -> None:
        """Use ``text``'s rules here, as another node changed them (``gateway.routing.rules.shared``), and write
        them to this node's file where it can be written, so that a restart starts from them; a
        read-only file (e.g. a ConfigMap) is left as it is. Raises RulesLoadError if the text does
        not load here."""
        rules = parse_rules(text, os.fspath(self.path))
        with self._lock:
            with contextlib.suppress(OSError):
                if self.path.read_text() != text:
                    _write_atomically(self.path.resolve(), text)
            self.text, self.rules, self._signature = text, rules, _signature(self.path)
            self.last_error = None
            self.reloads += 1
        log.info("routing rules changed on another node taken up: %d rules", len(rules))

    async def watch_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            # stat() is quick, but a hung network file system must not stall the event loop.
            await asyncio.to_thread(self.check)
