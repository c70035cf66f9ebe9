"""One answer on the page (assistant/static/assistant/assistant-turn.js), run in Chromium.

The merge rules of docs/protocol.md, on a real DOM: deltas from two streams that overlap
anywhere add each character once; a `done` that is shorter cuts the text; one that is
longer, or a delta past a hole, is refused as a gap. Hypothesis interleaves two streams'
deltas of one text, cut into pieces of its choosing. Positions count code points, so the
texts are full of characters outside the BMP. The module is served from disk through a
routed origin (no server).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parents[1] / "static" / "assistant"
ORIGIN = "http://assistant-turn.test"

# Runs in the page: a new turn, then `steps` ([kind, ...args]); returns what each showed.
RUN_STEPS = """
(steps) => {
  const { Turn } = window.assistantTurn;
  const item = Turn.create({
    meta: { id: 7, status: "streaming", model: "m", continues: null },
    question: { id: 3, text: "q", author: "alice" },
  });
  document.body.replaceChildren(item);
  const url = (id) => `/answers/${id}`;
  const urls = { stop: url, retry: url, continue: url };
  const turn = new Turn(item, { urls, csrfToken: () => "token" });
  turn.setStatus("streaming");
  const text = item.querySelector("[data-answer-text]");
  const seen = [];
  for (const [kind, ...args] of steps) {
    let fit = null;
    if (kind === "delta") fit = turn.applyDelta(args[0], args[1]);
    else if (kind === "done") {
      fit = turn.applyDone({ status: args[0], position: args[1], error: args[2] });
    }
    else if (kind === "hold") turn.hold = args[0];
    else if (kind === "render") turn.render();
    seen.push({
      fit,
      shown: text.textContent,
      received: turn.received,
      rendered: turn.rendered,
      status: item.dataset.status,
      statusLine: item.querySelector("[data-answer-status]").textContent,
      actions: [...item.querySelectorAll("[data-answer-actions] button")].map((b) => b.textContent),
    });
  }
  return seen;
}
"""


@pytest.fixture
async def turn_page(browser):
    """A page with assistant-turn.js imported as ``window.assistantTurn``."""
    context = await browser.new_context()

    async def serve(route):
        name = route.request.url.rsplit("/", 1)[-1]
        if name.endswith(".js") and (STATIC / name).is_file():
            await route.fulfill(body=(STATIC / name).read_text(), content_type="text/javascript")
        else:
            await route.fulfill(body="<!doctype html><title>turn</title>", content_type="text/html")

    await context.route(f"{ORIGIN}/**", serve)
    page = await context.new_page()
    await page.goto(f"{ORIGIN}/")
    await page.evaluate(
        "async () => { window.assistantTurn = await import('/assistant-turn.js'); }"
    )
    yield page
    await context.close()


async def run(page, steps: list[list]) -> list[dict]:
    return await page.evaluate(RUN_STEPS, steps)


def delta(text: str, start: int, end: int) -> list:
    """The delta of ``text[start:end]`` (code points), as the server sends it."""
    return ["delta", end, text[start:end]]


TEXT = "a😀b👍🏽c中é"  # positions count code points: 👍🏽 is two, each beyond the BMP


async def test_overlapping_and_covered_deltas_add_each_character_once(turn_page):
    steps = [
        delta(TEXT, 0, 3),
        ["render"],
        delta(TEXT, 1, 5),  # overlaps: only its last two are new
        delta(TEXT, 2, 4),  # covered: nothing
        ["render"],
        delta(TEXT, 7, 8),  # a hole between 5 and 7: refused
        ["render"],
    ]
    seen = await run(turn_page, steps)
    assert [s["fit"] for s in seen] == ["added", None, "added", "nothing", None, "gap", None]
    assert seen[1]["shown"] == TEXT[:3] and seen[0]["shown"] == ""  # drawn on render only
    assert seen[4]["shown"] == seen[6]["shown"] == TEXT[:5]
    assert seen[6]["received"] == seen[6]["rendered"] == 5


async def test_a_shorter_done_cuts_the_text_and_a_longer_one_is_a_gap(turn_page):
    seen = await run(
        turn_page,
        [
            delta(TEXT, 0, 6),
            ["render"],
            delta(TEXT, 6, 8),  # received, not yet drawn when the cut comes
            ["done", "complete", 9, None],  # announces text never received
            ["done", "stopped", 2, None],
            delta(TEXT, 2, 8),  # a late delta of a finished answer
            ["render"],
        ],
    )
    assert seen[3]["fit"] == "gap" and seen[3]["status"] == "streaming"
    stopped = seen[4]
    assert stopped["fit"] == "added" and stopped["shown"] == TEXT[:2] and stopped["received"] == 2
    assert stopped["status"] == "stopped" and stopped["statusLine"] == "Stopped."
    assert stopped["actions"] == ["Continue"]
    assert seen[5]["fit"] == "nothing" and seen[6]["shown"] == TEXT[:2]


async def test_a_held_turn_draws_nothing_beyond_the_hold(turn_page):
    seen = await run(
        turn_page, [delta(TEXT, 0, 3), ["render"], ["hold", 3], delta(TEXT, 3, 8), ["render"]]
    )
    assert seen[-1]["shown"] == TEXT[:3] and seen[-1]["received"] == 8


async def test_statuses_show_their_words_and_actions(turn_page):
    seen = await run(
        turn_page,
        [["done", "failed", 0, "the model server answered 500"]],
    )
    assert seen[0]["statusLine"] == "Failed: the model server answered 500"
    assert seen[0]["actions"] == ["Retry"]
    words = await turn_page.evaluate(
        """() => ["complete", "stopped", "interrupted", "failed", "streaming"].map(
            (status) => window.assistantTurn.announcement(status, "why"))"""
    )
    assert words == [
        "Answer complete.",
        "Answer stopped.",
        "Answer interrupted: why",
        "Answer failed: why",
        "",
    ]


# Two streams, any interleaving -------------------------------------------------------------


@st.composite
def two_streams(draw):
    """A text, and the deltas of two streams over it, interleaved (each in its order)."""
    text = draw(
        st.lists(st.sampled_from(["a", "é", "中", "😀", "👍", "🏽", " ", "\n"]), max_size=40)
    )
    streams = []
    for _ in range(2):
        cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(text))), max_size=8))))
        start = draw(st.integers(0, len(text)))  # a stream may join mid-answer
        bounds = [start, *[c for c in cuts if c > start], len(text)]
        streams.append([(a, b) for a, b in itertools.pairwise(bounds) if b > a])
    order = draw(st.permutations([0] * len(streams[0]) + [1] * len(streams[1])))
    positions = [0, 0]
    merged = []
    for which in order:
        merged.append(streams[which][positions[which]])
        positions[which] += 1
    return text, merged


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=two_streams())
async def test_two_interleaved_streams_show_the_text_once_in_order(turn_page, case):
    chars, spans = case
    text = "".join(chars)
    steps = []
    for start, end in spans:
        steps += [["delta", end, "".join(chars[start:end])], ["render"]]
    seen = await run(turn_page, steps)
    for step in seen:
        assert text.startswith(step["shown"])  # never a character twice or out of order
        if step["fit"] is None:  # just rendered: all that was received is on screen
            assert step["shown"] == "".join(chars[: step["received"]])
    reached = 0
    for start, end in spans:  # contiguous from 0; a delta past a hole is left out
        if start <= reached:
            reached = max(reached, end)
    assert (seen[-1]["shown"] if seen else "") == "".join(chars[:reached])
