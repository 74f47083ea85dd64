"""The routing_rules section of the configuration: validated at start-up like every other."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_config, parse_config


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"enabled": True}, "routing_rules: Value error, type FILE needs rules_file"),
        ({"enabled": True, "type": "EXTERNAL"}, "type EXTERNAL needs external.url"),
        ({"enabled": True, "type": "PYTHON"}, "routing_rules.type: Input should be 'FILE' or 'EXTERNAL'"),
        ({"rulesFile": "x.yaml"}, "routing_rules.rulesFile: unknown key"),
        ({"external": {"url": "ftp://x"}}, "routing_rules.external.url: Value error, must be an http"),
        ({"external": {"url": "http://x", "timeout": 0}}, "routing_rules.external.timeout"),
    ],
)
def test_bad_routing_rules_settings_are_named(section, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config({"routing_rules": section})


def test_a_relative_rules_file_is_found_next_to_the_config_file(tmp_path):
    (tmp_path / "conf").mkdir()
    config_file = tmp_path / "conf" / "gateway.yaml"
    config_file.write_text("routing_rules:\n  enabled: true\n  rules_file: rules/routing.yaml\n")
    config = load_config(config_file)
    assert config.routing_rules.rules_file == str(tmp_path / "conf" / "rules" / "routing.yaml")
