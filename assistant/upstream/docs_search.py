"""Find the sections of the project's own documentation that answer a question.

What the offline docs assistant quotes from: README.md and docs/*.md, split into sections
at their Markdown headings (not at ``#`` lines inside fenced code), ranked by BM25 over
lowercased words, with a section's own heading counted three times (a heading says what
the section is about). Small and dependency-free: the documentation is a few hundred
sections at most.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# BM25's usual constants: term-frequency saturation, and how much length normalises.
K1 = 1.2
B = 0.75
HEADING_WEIGHT = 3

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
WORD = re.compile(r"[a-z0-9]+")
# "Last-Event-ID", "notify_all": also indexed whole, so naming one ranks its sections first.
COMPOUND = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)+")
# Words that say nothing about which section is meant.
STOPWORDS = frozenset({
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can",
    "could", "did", "do", "does", "doing", "for", "from", "had", "has", "have", "how", "i",
    "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our",
    "should", "so", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "to", "up", "us", "was", "we", "were", "what", "when", "where", "which",
    "who", "why", "will", "with", "would", "you", "your", "tell", "explain", "please",
    "work", "works",
})  # fmt: skip


@dataclass(frozen=True)
class Section:
    """One heading of a document and the text under it, up to the next heading."""

    path: str  # as shown: "docs/protocol.md", "README.md"
    trail: tuple[str, ...]  # the headings above it and its own, outermost first
    text: str

    @property
    def heading(self) -> str:
        return " > ".join(self.trail)

    @property
    def level(self) -> int:
        return len(self.trail)


def words(text: str) -> list[str]:
    """Lowercased words without stopwords, plurals folded ("announcements" -> "announcement").

    Compound names count once more as a whole: "last-event-id" adds "lasteventid".
    """
    text = text.lower()
    found = [re.sub(r"[-_.]", "", compound) for compound in COMPOUND.findall(text)]
    for word in WORD.findall(text):
        if word in STOPWORDS:
            continue
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.append(word)
    return found


def split_sections(markdown: str, path: str) -> list[Section]:
    """The sections of one Markdown document; text before its first heading is dropped."""
    sections: list[Section] = []
    trail: list[str] = []
    lines: list[str] = []
    in_fence = False

    def close() -> None:
        text = "\n".join(lines).strip()
        if trail and text:
            sections.append(Section(path, tuple(trail), text))
        lines.clear()

    for line in markdown.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := HEADING.match(line)):
            close()
            level = len(match.group(1))
            del trail[level - 1 :]
            # A skipped level (# then ###) still nests under what is above it.
            trail.append(match.group(2))
            continue
        lines.append(line)
    close()
    return sections


@dataclass
class DocsIndex:
    """BM25 over sections; ``search`` returns the best matches, best first."""

    sections: list[Section]
    _counts: list[Counter] = field(init=False, repr=False)
    _lengths: list[int] = field(init=False, repr=False)
    _document_frequency: Counter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._counts = []
        for section in self.sections:
            counts = Counter(words(section.text))
            counts.update(words(" ".join(section.trail[:-1])))
            for word in words(section.trail[-1]):
                counts[word] += HEADING_WEIGHT
            self._counts.append(counts)
        self._lengths = [sum(counts.values()) for counts in self._counts]
        self._document_frequency = Counter(word for counts in self._counts for word in counts)

    def search(self, question: str, limit: int = 2) -> list[tuple[float, Section]]:
        """The sections that share words with ``question``, best first (ties: document order)."""
        query = set(words(question))
        if not query or not self.sections:
            return []
        total = len(self.sections)
        average_length = sum(self._lengths) / total
        scored = []
        for position, (section, counts, length) in enumerate(
            zip(self.sections, self._counts, self._lengths, strict=True)
        ):
            score = 0.0
            for word in query:
                frequency = counts.get(word, 0)
                if not frequency:
                    continue
                documents = self._document_frequency[word]
                idf = math.log(1 + (total - documents + 0.5) / (documents + 0.5))
                norm = K1 * (1 - B + B * length / average_length)
                score += idf * frequency * (K1 + 1) / (frequency + norm)
            if score > 0:
                scored.append((-score, position, section))
        scored.sort()
        return [(-negative, section) for negative, _, section in scored[:limit]]

    def topics(self, limit: int = 10) -> list[str]:
        """Second-level headings to suggest, without their file names and dated titles."""
        found = []
        for section in self.sections:
            if section.level != 2 or re.search(r"\d", section.trail[-1]):
                continue
            title = re.sub(r"\s*\(`[^)]*\)", "", section.trail[-1]).strip()
            if title not in found:
                found.append(title)
        return found[:limit]


def read_docs(docs_dir: Path, readme: Path) -> DocsIndex:
    """Index README.md and docs/*.md (in name order); missing files are skipped."""
    docs_dir, readme = Path(docs_dir).resolve(), Path(readme).resolve()
    root = readme.parent
    files = ([readme] if readme.is_file() else []) + sorted(docs_dir.glob("*.md"))
    sections = []
    for path in files:
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        sections += split_sections(path.read_text(encoding="utf-8", errors="replace"), shown)
    return DocsIndex(sections)


@functools.cache
def cached_docs(docs_dir: Path, readme: Path) -> DocsIndex:
    """``read_docs``, once per process: the documentation does not change while it runs."""
    return read_docs(docs_dir, readme)
