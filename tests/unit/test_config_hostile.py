"""The mappings file as an attacker or a careless admin writes it: always a ConfigError (exit 2) with
lines that name the file and the line, within 2 s, in bounded memory; never another exception."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning.config import MAX_PROBLEMS, ConfigError, ProvisioningConfig, load_config, parse_config
from provisioning.config_reading import MAX_BYTES

BASE = """\
mappings:
  - name: First
    match: {all: true}
    target: {profile: P, storage: S}
"""
LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)
MANY_BAD = "mappings:\n" + "".join(
    f"  - {{name: m{i}, match: {{all: false}}, target: {{profile: P, storage: S}}}}\n" for i in range(500)
)
CHAIN = "".join(f"k{i}: &a{i} [{'*a' + str(i - 1) if i else 'x'}]\n" for i in range(300))


def refused(text: str, source: str = "m.yaml") -> list[str]:
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source)
    assert time.monotonic() - started < 2.0
    problems = caught.value.problems
    assert 1 <= len(problems) <= MAX_PROBLEMS + 1
    assert all(line.startswith(source) or line.startswith("and ") for line in problems), problems
    assert all(len(line) <= 400 for line in problems)
    return problems


HOSTILE = [
    # (text, a fragment of the first problem)
    (LAUGHS + BASE, "expands to more than 50000 values (aliases)"),
    ("a: &a [*a]\n" + BASE, "m.yaml:1: an alias refers to a block that contains it"),
    (CHAIN + BASE, "levels deep (counting aliases)"),
    ("[" * 50_000 + "]" * 50_000, "m.yaml:1: nested more than 32 levels deep"),
    ("{a: " * 5_000 + "1" + "}" * 5_000, "nested more than 32 levels deep"),
    ("- " * 2_000 + "x", "nested more than 32 levels deep"),
    ("1: x\n" + BASE, "m.yaml:1: key '1' must be text"),
    ("true: x\n" + BASE, "m.yaml:1: key 'true' must be text"),
    ("null: x\n" + BASE, "must be text"),
    ("? [a, b]\n: c\n" + BASE, "m.yaml:1: key a sequence must be text"),
    ("? {a: b}\n: c\n" + BASE, "m.yaml:1: key a mapping must be text"),
    (BASE.replace("First", '"\\ud800"'), "m.yaml:2: "),  # libyaml refuses the escape itself
    (BASE.replace("First", '"a\\0b"'), "m.yaml:2: value 'a\\x00b' holds control character"),
    (BASE.replace("First", '"a\\x1bb"'), "m.yaml:2: value"),
    (BASE.replace("First", "a\x00b"), "m.yaml:2: control character U+0000 is not allowed"),
    (BASE.replace("First", "a\x07b"), "m.yaml:2: control character U+0007"),
    (BASE.replace("First", "a\x85b"), "m.yaml:2: control character U+0085"),
    (BASE.replace("First", "a\ufffeb"), "m.yaml:2: control character U+FFFE"),
    (BASE.replace("First", "x" * 1_000_000), "characters long; at most 1024"),
    (BASE.replace("P, storage", "'" + "p" * 5000 + "', storage"), "at most 1024"),
    (BASE.replace("storage: S}", "storage: S, quota: 0 MB}"), "would mean unlimited to Druva"),
    (BASE.replace("storage: S}", "storage: S, quota: 0 GB}"), "write 'unlimited'"),
    (BASE.replace("storage: S}", "storage: S, quota: ١٠٠ GB}"), "is not '<n> MB'"),
    (BASE.replace("storage: S}", "storage: S, quota: １００ GB}"), "is not '<n> MB'"),
    (BASE.replace("storage: S}", "storage: S, quota: " + "9" * 5000 + " GB}"), "is not '<n> MB'"),
    (BASE.replace("storage: S}", "storage: S, quota: 100 " + "G" * 5000 + "}"), "Druva takes MB, GB or TB"),
    (BASE + "safety: {max_preserve_fraction: ١}\n", "must be a number"),
    (BASE + "safety: {max_preserve_fraction: .nan}\n", "max_preserve_fraction"),
    (BASE + "safety: {max_preserve_fraction: 1e999}\n", "max_preserve_fraction"),
    ("mappings: *nothing\n", "not valid YAML"),
    ("mappings: !!python/object:os.system x\n", "not valid YAML"),
    ("mappings: [\n", "m.yaml:2: not valid YAML"),
    ("\t- x", "not valid YAML"),
    ("- a\n- b\n", "the top level must be a mapping"),
    ("just text", "the top level must be a mapping"),
    ("", "the configuration is empty"),
    ("---\n...\n---\n", "not valid YAML"),
    (BASE + "mappings: []\n", "appears twice"),
    ("<<: {mappings: 1}\n", "mappings"),
    ("<<: [1, 2]\n", "not valid YAML"),
    (BASE.replace("First", "[First]"), "name: must be text, got list"),
    (BASE.replace("{all: true}", "{all: true, groups: [a]}"), "takes exactly one of groups, attribute"),
    (MANY_BAD, "match.all: must be true"),
]


@pytest.mark.parametrize(("text", "fragment"), HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_files_are_refused_with_their_line(text: str, fragment: str) -> None:
    problems = refused(text)
    assert fragment in problems[0], problems


def test_many_problems_are_capped_at_twenty_then_counted() -> None:
    problems = refused(MANY_BAD)
    assert len(problems) == MAX_PROBLEMS + 1 and problems[-1] == "and 480 more"


def test_a_long_name_is_shortened_in_messages() -> None:
    problems = refused(BASE.replace("First", "N" * 100_000).replace("{all: true}", "{all: maybe}"))
    assert all(line.count("N") < 100 for line in problems)


def test_merge_keys_work() -> None:
    config = parse_config(
        """\
mappings:
  - name: First
    match: {all: true, kinds: [shared_mailbox]}
    target: &defaults {profile: P, storage: S, quota: 10 GB}
  - name: Second
    match: {all: true}
    target:
      <<: *defaults
      quota: 20 GB
"""
    )
    assert str(config.mappings[1].target.quota) == "20 GB" and config.mappings[1].target.profile == "P"


def test_a_duplicate_key_is_still_refused_beside_a_merge() -> None:
    text = BASE.replace("{profile: P, storage: S}", "{<<: {profile: P}, storage: S, storage: T}")
    assert "appears twice" in refused(text)[0]


def test_file_size_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(BASE.encode() + b"#" * MAX_BYTES)
    with pytest.raises(ConfigError, match="larger than 1 MB"):
        load_config(path)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"mappings:\n  - name: \xff\xfe\n", "big.yaml:2: not UTF-8 text: byte 0xff at byte offset 20"),
        (b"\x80", "big.yaml:1: not UTF-8 text: byte 0x80 at byte offset 0"),
        (BASE.encode("utf-16"), "not UTF-8 text"),
        (b"\xef\xbb\xbf" + BASE.encode(), None),  # a byte-order mark is fine
    ],
)
def test_decoding_errors_name_the_byte_offset(tmp_path: Path, data: bytes, fragment: str | None) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(data)
    if fragment is None:
        assert load_config(path).mappings[0].name == "First"
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems[0] == f"{path.parent}/{fragment}" or fragment in caught.value.problems[0]


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a regular file"):
        load_config(tmp_path)


# --- generated hostile files ---------------------------------------------------------------------------

YAML_ALPHABET = st.sampled_from(
    [*"{}[]:,-?&*!|>'\"%@`#<=~ \n\t\\aZ0.", "\x00", "\x1b", "\ud800", "\u2028", "\ufeff", "١"]
)
HOSTILE_FRAGMENTS = st.sampled_from(
    [
        LAUGHS.replace("\n", "\n  "),
        "[" * 100 + "]" * 100,
        '"\\ud800"',
        '"\\0"',
        "!!binary AAAA",
        "!!python/name:os.system",
        "*undefined",
        "&a [*a]",
        "{? [a]: b}",
        "{1: 2}",
        "0 MB",
        "１ GB",
        "x" * 2000,
        "<<: *a",
        "'\x7f'",
    ]
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.booleans()), inner, max_size=4),
    ),
    max_leaves=30,
)
SETTINGS = settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def parses_or_refuses(text: str) -> None:
    started = time.monotonic()
    result: ProvisioningConfig | list[str]
    try:
        result = parse_config(text, "m.yaml")
    except ConfigError as error:
        result = error.problems
    assert time.monotonic() - started < 2.0
    if isinstance(result, list):
        assert result and all(isinstance(p, str) and len(p) <= 400 for p in result)


@SETTINGS
@given(st.text(YAML_ALPHABET, max_size=300))
def test_any_text_is_parsed_or_refused(text: str) -> None:
    parses_or_refuses(text)


@SETTINGS
@given(key=st.text(YAML_ALPHABET, min_size=1, max_size=10), fragment=HOSTILE_FRAGMENTS)
def test_a_hostile_fragment_beside_a_valid_file_is_refused(key: str, fragment: str) -> None:
    text = f"{BASE}{json_key(key)}: {fragment}\n"
    with pytest.raises(ConfigError):
        parse_config(text, "m.yaml")


@SETTINGS
@given(fragment=HOSTILE_FRAGMENTS, where=st.sampled_from(["First", "P", "S", "true"]))
def test_a_hostile_value_inside_a_mapping_is_refused_or_read(fragment: str, where: str) -> None:
    parses_or_refuses(BASE.replace(where, fragment, 1))


@SETTINGS
@given(VALUES)
def test_any_structure_any_key_type_any_depth(value: object) -> None:
    parses_or_refuses(yaml.safe_dump({"mappings": value}, allow_unicode=True))
    parses_or_refuses(yaml.safe_dump(value, allow_unicode=True))


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_are_refused_or_read(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("bytes") / "m.yaml"
    path.write_bytes(data)
    problems = ["read"]
    try:
        load_config(path)
    except ConfigError as error:
        problems = error.problems
    assert problems


def json_key(key: str) -> str:
    """A key that is always a new top-level key (unknown, so the file must be refused)."""
    return '"zz' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
