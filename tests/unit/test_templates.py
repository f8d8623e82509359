"""Unit tests for herald.templates: syntax, filters, missing variables, and safety."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.errors import TemplateError, ValidationError
from herald.templates import Template, compile_template, render

LONG = "Hello there, how are you doing?"


def test_plain_substitution() -> None:
    assert render("Hi {name}!", {"name": "Ada"}) == "Hi Ada!"


def test_nested_path_list_index_and_hyphen() -> None:
    ctx = {"user": {"name": {"first": "Ada"}}, "items": [{"sku": "A1"}], "mq-uuid-btag": "t"}
    assert render("{user.name.first} {items.0.sku} {mq-uuid-btag}", ctx) == "Ada A1 t"


def test_value_conversion() -> None:
    assert render("[{a}|{b}|{c}|{d}]", {"a": None, "b": 3, "c": 1.5, "d": True}) == "[|3|1.5|True]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (LONG, "Hello there, ho..."),
        ("Hi", "Hi"),
        ("x" * 15, "x" * 15),
        ("x" * 16, "x" * 15 + "..."),
    ],
)
def test_sub_with_ellipsis_only_when_cut(text: str, expected: str) -> None:
    assert render("{message|sub(0,15)|'...'}", {"message": text}) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{v|upper}", "  HELLO WORLD "),
        ("{v|lower}", "  hello world "),
        ("{v|title}", "  Hello World "),
        ("{v|trim}", "hello World"),
        ("{v|trim|sub(5)}", "hello"),
        ("{v|trim|sub(6,11)}", "World"),
        ('{v|trim|sub(-6)|"…"}', "hello…"),
        ("{v|trim|sub(6,50)|'...'}", "World"),
        ("{ v | upper() | trim }", "HELLO WORLD"),
        ("{v|default('x')}", "  hello World "),
    ],
)
def test_filters(template: str, expected: str) -> None:
    assert render(template, {"v": "  hello World "}) == expected


def test_default_used_for_missing_none_and_empty() -> None:
    tpl = compile_template("{a|default('-')}{b|default(\"-\")}{c|default(0)}{d.e|default('n/a')}")
    assert tpl.render({"b": None, "c": ""}) == "--0n/a"
    assert tpl.variables() == frozenset()
    assert tpl.missing({}) == []


def test_default_after_other_filters_and_quoted_specials() -> None:
    assert render("{a|trim|default('x')}", {"a": "   "}) == "x"
    assert render("{a|default('it\\'s {}|')}", {}) == "it's {}|"


def test_escaped_braces() -> None:
    assert render("{{literal}} {{{name}}} }}", {"name": "x"}) == "{literal} {x} }"


def test_variables_and_missing() -> None:
    tpl = compile_template("{a} {b.c} {a|upper} {d|default('x')}")
    assert tpl.variables() == frozenset({"a", "b.c"})
    assert tpl.missing({"b": {"c": 1}}) == ["a"]
    assert tpl.missing({"a": 1, "b": {"c": None}}) == []
    assert tpl.missing({"a": 1, "b": "not a mapping"}) == ["b.c"]


def test_render_missing_variable_raises() -> None:
    with pytest.raises(TemplateError, match="name") as info:
        render("Hi {name}", {})
    assert isinstance(info.value, ValidationError)


def test_attributes_are_never_used() -> None:
    class User:
        name = "attr"

    tpl = compile_template("{user.__class__}{user.name}")
    assert tpl.missing({"user": {}}) == ["user.__class__", "user.name"]
    assert tpl.missing({"user": User()}) == ["user.__class__", "user.name"]
    with pytest.raises(TemplateError):
        tpl.render({"user": User()})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Hi {name", "unclosed '{' opened at position 3"),
        ("Hi {", "unclosed '{'"),
        ("{name|sub(1", "unclosed '{'"),
        ("a } b", "unmatched '}' .* at position 2"),
        ("{}", "empty placeholder at position 0"),
        ("x{ }", "empty placeholder at position 1"),
        ("{name|shout}", "unknown filter 'shout' at position 6"),
        ("{name|}", "expected a filter name"),
        ("{name|sub}", "bad arguments to filter 'sub'"),
        ("{name|sub('a')}", "bad arguments to filter 'sub'"),
        ("{name|sub(1,2,3)}", "bad arguments to filter 'sub'"),
        ("{name|sub(1,)}", "expected a quoted string or integer"),
        ("{name|default}", "bad arguments to filter 'default'"),
        ("{name|upper(1)}", "bad arguments to filter 'upper'"),
        ("{name|'...'}", "only allowed directly after sub"),
        ("{name|sub(2)|upper|'...'}", "only allowed directly after sub"),
        ("{name|default('x}", "unterminated string literal at position 14"),
        ("{a..b}", "expected a variable name segment"),
        ("{0abc}", "expected a variable name segment"),
        ("{a b}", "unexpected 'b' in placeholder"),
    ],
)
def test_syntax_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        compile_template(source)


@pytest.mark.parametrize(
    "source",
    [
        "{__import__('os').system('x')}",
        "{name.__class__.__mro__[1].__subclasses__()}",
        "{0.__class__}",
        "{name|system('x')}",
        "{name!r}",
        "{name:>10}",
    ],
)
def test_malicious_input_is_rejected_without_executing(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def fake_system(command: str) -> int:
        calls.append(command)
        return 0

    monkeypatch.setattr(os, "system", fake_system)
    with pytest.raises(TemplateError):
        render(source, {"name": "x"})
    assert calls == []


def test_compile_is_cached_and_template_exposes_source() -> None:
    tpl = compile_template("Hi {name}")
    assert compile_template("Hi {name}") is tpl
    assert isinstance(tpl, Template) and tpl.source == "Hi {name}"


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="{}")))
def test_text_without_braces_renders_to_itself(text: str) -> None:
    assert render(text, {}) == text


TEMPLATE_CHARS = st.sampled_from([*"{}|.()'\",\\ -_0aux", "sub", "default", "upper", "{a"])


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.lists(TEMPLATE_CHARS, max_size=30).map("".join)))
def test_rendering_raises_only_template_error(source: str) -> None:
    try:
        render(source, {"a": "text", "u": {"x": [1, None]}})
    except TemplateError:
        pass


# -- only scalars render; output is capped while it is built (issue 9, finding 3) ---------------
OBJECTS = {"details": {"vars": {"a": 1}}, "user": {"name": {"first": "Ada"}}, "items": [1, 2]}


@pytest.mark.parametrize("source", ["{details}", "{user}", "{items}", "{user.name}",
                                    "{items|upper}", "{user|default('x')}"])
def test_a_placeholder_naming_an_object_is_refused(source: str) -> None:
    with pytest.raises(TemplateError, match="names an object; only text and numbers render"):
        render(source, OBJECTS)


def test_scalars_inside_objects_still_render() -> None:
    assert render("{user.name.first} {items.1} {details.vars.a}", OBJECTS) == "Ada 2 1"


def test_limit_counts_the_whole_output() -> None:
    tpl = compile_template("ab{v}cd")
    assert tpl.render({"v": "xy"}, limit=6) == "abxycd"
    with pytest.raises(TemplateError, match="renders to more than 5 characters"):
        tpl.render({"v": "xy"}, limit=5)
    assert render("{v}", {"v": "x" * 10}, limit=10) == "x" * 10


def test_a_template_that_would_render_a_gigabyte_stops_at_the_limit() -> None:
    import time
    import tracemalloc

    big = "x" * 60_000
    tpl = compile_template("{big}" * 20_000)  # 100,000 characters of source → 1.2 GB of output
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(TemplateError, match="more than 100000"):
            tpl.render({"big": big}, limit=100_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000
    assert time.perf_counter() - started < 2.0


def test_a_repeated_placeholder_is_compiled_once() -> None:
    tpl = compile_template("{a}-{a}-{a|upper}-{a}")
    assert tpl.render({"a": "x"}) == "x-x-X-x"
    assert tpl.missing({}) == ["a"]
    assert tpl.variables() == frozenset({"a"})
