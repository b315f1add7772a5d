"""Feature flags: the documented test vectors (docs/edge-agent.md, "Feature flags"), the
same in every binding and on every agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ingest_core
from ingest_core import ConfigError, Flags

# checkout_v2's two percentages are filled in by each test.
FLAGS = """
[[flags]]
name = "checkout_v2"
variants = [{{ name = "control", percent = {control} }}, {{ name = "treatment", percent = {treatment} }}]

[[flags]]
name = "search_ranking"
variants = [{{ name = "bm25", percent = 50 }}, {{ name = "learned", percent = 50 }}]
"""


def flags_text(control: int = 90, treatment: int = 10) -> str:
    return FLAGS.format(control=control, treatment=treatment)


def test_users_get_the_documented_variants() -> None:
    flags = Flags.from_toml(flags_text())
    assert len(flags) == 2
    # Buckets: checkout_v2/user-1 6666 and user-2 4270 (control owns 0-8999),
    # search_ranking/user-1 9624 (learned owns 5000-9999).
    assert flags.variant("checkout_v2", "user-1") == "control"
    assert flags.variant("checkout_v2", "user-2") == "control"
    assert flags.variant("search_ranking", "user-1") == "learned"
    assert flags.variant("no_such_flag", "user-1") is None
    assert flags.assign("user-1") == {"checkout_v2": "control", "search_ranking": "learned"}
    assert list(flags.assign("user-1")) == ["checkout_v2", "search_ranking"]


def test_growing_treatment_moves_the_users_of_the_boundary() -> None:
    # 90/10 to 60/40: buckets 6000-8999 move to treatment, user-1's 6666 among them.
    flags = Flags.from_toml(flags_text(60, 40))
    assert flags.variant("checkout_v2", "user-1") == "treatment"
    assert flags.variant("checkout_v2", "user-2") == "control"


def test_json_text_and_files_read_as_the_agent_reads_them(tmp_path: Path) -> None:
    as_json = json.dumps(
        {
            "flags": [
                {
                    "name": "checkout_v2",
                    "variants": [{"name": "control", "percent": 90}, {"name": "treatment", "percent": 10}],
                },
                {
                    "name": "search_ranking",
                    "variants": [{"name": "bm25", "percent": 50}, {"name": "learned", "percent": 50}],
                },
            ]
        }
    )
    from_toml = Flags.from_toml(flags_text())
    assert Flags.from_json(as_json).assign("user-2") == from_toml.assign("user-2")
    (tmp_path / "flags.toml").write_text(flags_text())
    (tmp_path / "flags.json").write_text(as_json)
    assert Flags.from_file(tmp_path / "flags.toml").assign("user-1") == from_toml.assign("user-1")
    assert Flags.from_file(str(tmp_path / "flags.json")).assign("user-1") == from_toml.assign("user-1")


def test_bad_flags_are_refused_naming_where() -> None:
    with pytest.raises(ConfigError) as refused:
        Flags.from_toml(flags_text(80, 10))
    assert refused.value.key == "flags[0].variants"
    assert str(refused.value) == "flags[0].variants: the percentages add up to 90, not 100"
    assert isinstance(refused.value, ValueError)
    with pytest.raises(ConfigError) as refused:
        Flags.from_toml('[[flags]]\nnme = "f"\n')
    assert refused.value.key == "flags file"
    assert "unknown field `nme`" in str(refused.value)
    assert "line 2 column 1" in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        Flags.from_json("{")
    assert refused.value.key == "flags file"


def test_a_file_that_cannot_be_read_or_checked_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as refused:
        Flags.from_file(missing)
    assert str(refused.value).startswith(f"{missing}: flags file: cannot be read: ")
    bad = tmp_path / "flags.toml"
    bad.write_text(flags_text(80, 10))
    with pytest.raises(ConfigError, match="flags\\[0\\]\\.variants") as refused:
        Flags.from_file(bad)
    assert str(refused.value).startswith(f"{bad}: ")


def test_flags_is_exported() -> None:
    assert ingest_core.Flags is Flags
    assert "Flags" in ingest_core.__all__
    assert repr(Flags.from_toml(flags_text())) == "Flags(len=2)"
