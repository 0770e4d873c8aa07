"""orchestrator.client.labels: the one LabelSelector and requirement matcher."""

from __future__ import annotations

import pytest

from orchestrator.client.labels import label_selector_matches, requirement_matches

LABELS = {"app": "web", "tier": "fe", "gen": "3"}


@pytest.mark.parametrize(
    "selector,want",
    [
        (None, False),  # a missing selector selects nothing
        ({}, True),  # an empty one everything
        ({"matchLabels": {"app": "web"}}, True),
        ({"matchLabels": {"app": "db"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "zone", "operator": "Exists"}],
            },
            False,
        ),  # fmt: skip
    ],
)
def test_label_selectors(selector: dict | None, want: bool) -> None:
    assert label_selector_matches(selector, LABELS) is want


def test_node_requirements_compare_integers() -> None:
    assert requirement_matches({"key": "gen", "operator": "Gt", "values": ["2"]}, "3")
    assert not requirement_matches({"key": "gen", "operator": "Lt", "values": ["2"]}, "3")
    assert not requirement_matches({"key": "gen", "operator": "Gt", "values": ["x"]}, "3")
    assert not requirement_matches({"key": "gen", "operator": "Gt", "values": ["2"]}, None)
    assert not requirement_matches({"key": "gen", "operator": "Bogus"}, "3")
