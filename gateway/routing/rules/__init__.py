"""Routing rules: which routing group a new query goes to, by the header, a rules file or a service.

``selector`` holds the strategies; ``file_rules`` the rules file and its reloading; ``language``
the safe MVEL subset rules are written in; ``query_properties`` what the SQL says; ``query_estimate``
what the planner says it costs (``queryEstimate``); ``external`` the routing service client.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gateway.config import ConfigError, RoutingRulesConfig
from gateway.routing.estimates import Estimator
from gateway.routing.rules.external import ExternalRoutingService
from gateway.routing.rules.file_rules import RuleSet, RulesFile, RulesLoadError, load_rules, parse_rules
from gateway.routing.rules.request import VERIFIED_USER, UserSource
from gateway.routing.rules.selector import (
    ExternalSelector,
    FileRulesSelector,
    GroupSelector,
    HeaderSelector,
    Selection,
)
from gateway.upstream import Upstream

__all__ = [
    "VERIFIED_USER",
    "ExternalSelector",
    "FileRulesSelector",
    "GroupSelector",
    "HeaderSelector",
    "RuleSet",
    "RulesFile",
    "RulesLoadError",
    "Selection",
    "UserSource",
    "check_rules",
    "create_selector",
    "load_rules",
    "parse_rules",
]


def check_rules(config: RoutingRulesConfig) -> None:
    """Start-up validation: a rules file that does not load stops the gateway with the reason."""
    if config.enabled and config.type == "FILE" and config.rules_file:
        try:
            load_rules(Path(config.rules_file))
        except RulesLoadError as error:
            raise ConfigError(f"routing_rules.rules_file: {error}") from None


def create_selector(
    config: RoutingRulesConfig,
    upstream: Upstream,
    on_fired: Callable[[list[str]], None] | None = None,
    estimator: Estimator | None = None,
) -> GroupSelector:
    """The selector the configuration asks for (``on_fired``: told which file rules fired for each query;
    ``estimator``: where file rules' ``queryEstimate`` comes from)."""
    users = UserSource(config.token_user_field, config.trust_unverified_jwt)
    if not config.enabled:
        return HeaderSelector()
    if config.type == "EXTERNAL":
        assert config.external is not None  # the config validates this
        service = ExternalRoutingService(
            upstream,
            config.external.url,
            config.external.exclude_headers,
            config.external.timeout,
            config.external.tls,
        )
        propagate = config.external.propagate_errors
        return ExternalSelector(service, propagate, config.max_body_size, users)
    assert config.rules_file is not None
    rules = RulesFile(config.rules_file, config.refresh_seconds)
    return FileRulesSelector(rules, config.max_body_size, users, on_fired, estimator)
