"""The search query language: examples, every error, and properties over random input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pacsnode.node.errors import BadRequest
from pacsnode.node.search.fields import PrivateTag, StandardTag
from pacsnode.node.search.query_format import to_text
from pacsnode.node.search.query_language import (
    All,
    And,
    FieldRef,
    Joker,
    Match,
    Node,
    Not,
    Or,
    Phrase,
    QuerySyntaxError,
    Range,
    Text,
    Wildcard,
    Word,
    parse,
)

MODALITY = FieldRef((StandardTag(0x00080060),))
BODY_PART = FieldRef((StandardTag(0x00180015),))
SERIES_DESCRIPTION = FieldRef((StandardTag(0x0008103E),))
STUDY_DATE = FieldRef((StandardTag(0x00080020),))


def test_free_text_word_and_phrase():
    assert parse("CHEST") == Text(Word("CHEST"))
    assert parse('"CT CHEST"') == Text(Phrase("CT CHEST"))
    assert parse("  chest  ") == Text(Word("chest"))


def test_empty_query_is_all():
    assert parse("") == All()
    assert parse("   \t\n") == All()


def test_field_by_keyword_any_case_and_by_tag():
    expected = Match(MODALITY, Word("CT"))
    assert parse("Modality:CT") == expected
    assert parse("modality:CT") == expected
    assert parse("0008,0060:CT") == expected
    assert parse("00080060:CT") == expected
    assert parse("Modality: CT") == expected  # space after the colon is allowed


def test_implicit_and_explicit_and():
    expected = And((Match(MODALITY, Word("CT")), Match(BODY_PART, Word("CHEST"))))
    assert parse("Modality:CT AND BodyPartExamined:CHEST") == expected
    assert parse("Modality:CT BodyPartExamined:CHEST") == expected


def test_precedence_not_and_or():
    a, b, c = (Text(Word(w)) for w in "abc")
    assert parse("a OR b c") == Or((a, And((b, c))))
    assert parse("a b OR c") == Or((And((a, b)), c))
    assert parse("NOT a b") == And((Not(a), b))
    assert parse("NOT (a OR b)") == Not(Or((a, b)))
    assert parse("(a OR b) c") == And((Or((a, b)), c))
    assert parse("NOT NOT a") == Not(Not(a))


def test_operators_are_upper_case_words_only():
    assert parse("a and b") == And(tuple(Text(Word(w)) for w in ("a", "and", "b")))
    assert parse("ANDROID") == Text(Word("ANDROID"))
    assert parse("NOT(a)") == Not(Text(Word("a")))


def test_wildcards():
    assert parse("SeriesDescription:*axial*") == Match(
        SERIES_DESCRIPTION, Wildcard((Joker.ANY, "axial", Joker.ANY))
    )
    assert parse("DOE?") == Text(Wildcard(("DOE", Joker.ONE)))
    assert parse("Modality:*") == Match(MODALITY, Wildcard((Joker.ANY,)))


def test_escapes_make_characters_literal():
    assert parse(r"PatientName:DOE\*") == Match(FieldRef((StandardTag(0x00100010),)), Word("DOE*"))
    assert parse(r"a\ b") == Text(Word("a b"))
    assert parse(r"\(x\)") == Text(Word("(x)"))
    assert parse(r"\AND") == Text(Word("AND"))
    assert parse(r'"say \"hi\" \\ there"') == Text(Phrase('say "hi" \\ there'))


def test_values_may_hold_colons_and_dots():
    study_time = FieldRef((StandardTag(0x00080030),))
    assert parse("StudyTime:10:15") == Match(study_time, Word("10:15"))
    assert parse("SOPInstanceUID:1.2.3.4") == Match(
        FieldRef((StandardTag(0x00080018),)), Word("1.2.3.4")
    )


def test_ranges():
    assert parse("StudyDate:[20200101 TO 20201231]") == Match(
        STUDY_DATE, Range("20200101", "20201231")
    )
    thickness = FieldRef((StandardTag(0x00180050),))
    assert parse("SliceThickness:[1 TO 2.5]") == Match(thickness, Range("1", "2.5"))
    assert parse("SliceThickness:{1 TO 2.5}") == Match(thickness, Range("1", "2.5", False, False))
    assert parse("StudyDate:[20200101 TO *]") == Match(STUDY_DATE, Range("20200101", None))
    assert parse("StudyDate:[* TO 20200101}") == Match(
        STUDY_DATE, Range(None, "20200101", True, False)
    )
    assert parse('StudyDate:["2020-01-01" TO "2020-12-31"]') == Match(
        STUDY_DATE, Range("2020-01-01", "2020-12-31")
    )
    assert parse("StudyDate:[ 20200101  TO  20201231 ]") == Match(
        STUDY_DATE, Range("20200101", "20201231")
    )


def test_field_group_distributes_the_field():
    assert parse("Modality:(CT OR MR)") == Or(
        (Match(MODALITY, Word("CT")), Match(MODALITY, Word("MR")))
    )
    assert parse("Modality:(CT NOT MR)") == And(
        (Match(MODALITY, Word("CT")), Not(Match(MODALITY, Word("MR"))))
    )


def test_sequence_paths():
    referenced = FieldRef((StandardTag(0x00081140), StandardTag(0x00081155)))
    assert parse("ReferencedImageSequence.ReferencedSOPInstanceUID:1.2.3") == Match(
        referenced, Word("1.2.3")
    )
    assert parse("0008,1140.0008,1155:1.2.3") == Match(referenced, Word("1.2.3"))
    assert referenced.key == "00081140.00081155"


def test_private_attributes_by_creator_and_element():
    expected = FieldRef((PrivateTag("GEMS_ACQU_01", 0x0019, 0x10),))
    assert parse('"GEMS_ACQU_01",0019,xx10:foo') == Match(expected, Word("foo"))
    assert parse('"GEMS_ACQU_01",0019XX10:foo') == Match(expected, Word("foo"))
    assert expected.key == "0019[GEMS_ACQU_01]10"
    # a creator with dots, inside a sequence, followed by a standard attribute
    nested = parse('"ACME 1.1",0029,xx01.CodeMeaning:x')
    assert isinstance(nested, Match)
    assert nested.field.path == (PrivateTag("ACME 1.1", 0x0029, 0x01), StandardTag(0x00080104))
    assert nested.field.key == "0029[ACME 1.1]01.00080104"


def test_private_creator_key_escapes_brackets():
    assert PrivateTag("A]B%C", 0x0009, 0x02).key == "0009[A%5DB%25C]02"


def test_a_phrase_followed_by_a_comma_is_still_free_text_without_a_colon():
    assert parse('"hello",world') == And((Text(Phrase("hello")), Text(Word(",world"))))


@pytest.mark.parametrize(
    ("query", "position", "expected"),
    [
        ("Foo:bar", 0, "a DICOM keyword or a tag"),
        ("Modality:", 9, "a value after 'Modality:'"),
        ("Modality: )", 10, "a value after 'Modality:'"),
        ("StudyDate:[1 TO", 15, "a bound"),
        ("StudyDate:[1 2]", 13, "TO between the bounds"),
        ("StudyDate:[1 TO 2", 17, "']' or '}' to close the range"),
        ("StudyDate:[* TO *]", 17, "at least one bound"),
        ("StudyDate:[2020* TO 2021]", 11, "a bound without wildcards"),
        ("(a", 2, "')' to close the '(' at position 0"),
        ('"abc', 4, "'\"' to close the quote at position 0"),
        ("a AND", 5, "a term"),
        ("AND a", 0, "a term"),
        ("a OR OR b", 5, "a term"),
        ("NOT", 3, "a term"),
        ("()", 1, "a term"),
        ("a) b", 1, "an operator or the end of the query"),
        ("[1 TO 2]", 0, "a field before a range"),
        ("x\\", 2, "a character after '\\'"),
        ("Modality:(CT PatientName:x)", 13, "a value (no field inside"),
        ('"ACME",0018,xx10:x', 7, "an odd (private) group"),
        ('"ACME",0019,1010:x', 7, "a private group and element"),
        ('"  ",0019,xx10:x', 0, "a private creator"),
        ("0008,006:x", 0, "a DICOM keyword or a tag"),
        ("Modality.Foo:x", 9, "a DICOM keyword or a tag"),
        ("(" * 150 + "a" + ")" * 150, 101, "at most 100 nested groups"),
    ],
)
def test_errors_say_where_and_what_was_expected(query, position, expected):
    with pytest.raises(QuerySyntaxError) as raised:
        parse(query)
    assert raised.value.position == position
    assert expected in raised.value.expected
    assert f"at position {position}: expected" in str(raised.value)


def test_the_error_is_a_bad_request_for_the_edges():
    with pytest.raises(BadRequest) as raised:
        parse("Modality:")
    assert raised.value.http_status == 400
    assert raised.value.code == "bad-search-query"
    assert "found the end of the query" in raised.value.message


# --- properties ---------------------------------------------------------------------

ALPHABET = st.sampled_from([*'abcXYZ019 :*?"()[]{}\\.,-^', "AND", "OR", "NOT", " TO "])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
@example('"a",0019,xx10')
@example("\\")
@example("Modality:(")
def test_any_text_parses_or_raises_the_domain_error(text):
    try:
        node = parse(text)
    except QuerySyntaxError as error:
        assert 0 <= error.position <= len(text)
    else:
        assert parse(to_text(node)) == node


@settings(max_examples=300)
@given(st.lists(ALPHABET, max_size=20).map("".join))
def test_query_like_text_parses_or_raises_the_domain_error(text):
    try:
        node = parse(text)
    except QuerySyntaxError as error:
        assert 0 <= error.position <= len(text)
    else:
        assert parse(to_text(node)) == node


def _merge(parts: list[str | Joker]) -> tuple[str | Joker, ...]:
    """Adjacent literal pieces as one, empty ones dropped: the parser's own shape."""
    merged: list[str | Joker] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif part != "":
            merged.append(part)
    return tuple(merged)


words = st.text(min_size=1).map(Word)
wildcards = (
    st.lists(st.one_of(st.text(), st.sampled_from(Joker)), min_size=1)
    .map(_merge)
    .filter(lambda parts: any(isinstance(p, Joker) for p in parts))
    .map(Wildcard)
)
phrases = st.text().map(Phrase)
ranges = st.builds(
    Range, st.none() | st.text(), st.text(), st.booleans(), st.booleans()
) | st.builds(Range, st.text(), st.none(), st.booleans(), st.just(True))
standard_tags = st.integers(0, 0xFFFFFFFF).map(StandardTag)
private_tags = st.builds(
    PrivateTag,
    st.text(min_size=1).map(str.strip).filter(bool),
    st.integers(0, 0x7FFF).map(lambda n: 2 * n + 1),
    st.integers(0, 0xFF),
)
fields = st.lists(standard_tags | private_tags, min_size=1, max_size=3).map(
    lambda path: FieldRef(tuple(path))
)
leaves = st.builds(Text, words | wildcards | phrases) | st.builds(
    Match, fields, words | wildcards | phrases | ranges
)


def _ranges_open_ends_included(node: Node) -> bool:
    if isinstance(node, Match) and isinstance(node.value, Range):
        value = node.value
        return (value.low is not None or value.include_low) and (
            value.high is not None or value.include_high
        )
    return True


trees = st.recursive(
    leaves.filter(_ranges_open_ends_included),
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=4).map(lambda items: And(tuple(items))),
        st.lists(children, min_size=2, max_size=4).map(lambda items: Or(tuple(items))),
        children.map(Not),
    ),
    max_leaves=8,
)


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_formatted_ast_parses_back_to_itself(tree):
    assert parse(to_text(tree)) == tree
