"""Sections of Markdown documents, and the search over them."""

from __future__ import annotations

from assistant.upstream.docs_search import DocsIndex, read_docs, split_sections, words

DOCUMENT = """Text before any heading is not a section.

# Guide

Intro of the guide.

## Installing

Run `make run`.

```sh
# a shell comment, not a heading
make test
```

### Upgrading

Read the changelog.

## Resuming streams

Browsers send Last-Event-ID when they reconnect.

## Empty
"""


def test_splits_at_headings_but_not_inside_code_fences():
    sections = split_sections(DOCUMENT, "docs/guide.md")

    assert [section.heading for section in sections] == [
        "Guide",
        "Guide > Installing",
        "Guide > Installing > Upgrading",
        "Guide > Resuming streams",
    ]
    installing = sections[1]
    assert "# a shell comment, not a heading" in installing.text
    assert installing.path == "docs/guide.md"


def test_words_fold_case_plurals_and_compound_names():
    assert words("The Announcements of Last-Event-ID") == [
        "lasteventid",
        "announcement",
        "last",
        "event",
        "id",
    ]


def test_search_ranks_the_section_that_names_the_words_first():
    index = DocsIndex(split_sections(DOCUMENT, "guide.md"))

    [(score, best), *_] = index.search("what does the browser send to resume?")

    assert score > 0
    assert best.heading == "Guide > Resuming streams"


def test_search_finds_nothing_for_unrelated_or_empty_questions():
    index = DocsIndex(split_sections(DOCUMENT, "guide.md"))

    assert index.search("velocity of a swallow") == []
    assert index.search("what is the") == []


def test_reads_readme_and_docs_with_paths_relative_to_the_project(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Project\n\n## Start\n\nmake run\n")
    (tmp_path / "docs" / "b.md").write_text("# B\n\n## Topic b\n\nbee\n")
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## Topic a\n\nay\n")

    index = read_docs(tmp_path / "docs", tmp_path / "README.md")

    assert [(s.path, s.heading) for s in index.sections] == [
        ("README.md", "Project > Start"),
        ("docs/a.md", "A > Topic a"),
        ("docs/b.md", "B > Topic b"),
    ]
    assert index.topics() == ["Start", "Topic a", "Topic b"]


def test_a_missing_readme_or_docs_folder_is_no_error(tmp_path):
    assert read_docs(tmp_path / "docs", tmp_path / "README.md").sections == []
