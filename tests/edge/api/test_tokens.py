"""The tokens file's lines: full, pull, and pull bound to one consumer; a line it cannot read is no token."""

from __future__ import annotations

import logging

import pytest

from edge.api.tokens import FULL, PULL, Grant, TokenCheck


def test_each_kind_of_line_gives_its_grant() -> None:
    check = TokenCheck(["full-one", "pull pull-one", "pull bound-one consumer=erp"])
    assert check.grant("Bearer full-one") == Grant(FULL)
    assert check.grant("Bearer pull-one") == Grant(PULL)
    assert check.grant("bearer bound-one") == Grant(PULL, "erp")
    assert check.grant("Bearer consumer=erp") is None and check.grant(None) is None


def test_a_bound_token_moves_only_its_consumer() -> None:
    assert Grant(PULL, "erp").may_move("erp") and not Grant(PULL, "erp").may_move("mes")
    assert Grant(PULL).may_move("mes") and Grant(FULL).may_move("mes")


@pytest.mark.parametrize("line", ["pull tok consumer=", "pull tok erp", "pull tok consumer=a consumer=b"])
def test_an_unreadable_pull_line_is_no_token_and_is_named_without_its_secret(
        line: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="edge.api"):
        check = TokenCheck(["full-one", line])
    assert check.grant("Bearer tok") is None and check.grant(f"Bearer {line}") is None
    assert "token 2 is ignored" in caplog.text and "tok " not in caplog.text
