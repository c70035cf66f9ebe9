"""The assistant's conversation page in a real Chromium against the real server.

The servers (daphne, then uvicorn) ask the fake upstream (its own process, scripted per
test), so what streams, when it stalls and whether the upstream saw a disconnect are the
test's to choose and to check. Every page records each text its answers show (a
MutationObserver), so a test can check that the text only ever grew by appending (no word
shown twice, none skipped, nothing shown that a Stop then took back).
"""

import os
import re
import signal

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from playwright.async_api import expect

from assistant import services
from assistant.models import Answer, DailyUsage
from streamsite.testing.browser import session_cookie_for

pytestmark = [pytest.mark.browser, pytest.mark.live_server]

WORDS = [f"word{i}é😀 " for i in range(40)]
FULL = "".join(WORDS)
#: Long enough for an answer paced by the fake upstream, short of the test's timeout.
ANSWER_MS = 15_000

# Every text an answer shows, in order, per answer id (consecutive repeats dropped).
RECORD_TEXTS = """
window.answerTexts = {};
const record = () => {
  for (const node of document.querySelectorAll("li[data-answer] [data-answer-text]")) {
    const id = node.closest("li").dataset.answer;
    const texts = (window.answerTexts[id] ||= []);
    if (texts[texts.length - 1] !== node.textContent) texts.push(node.textContent);
  }
};
document.addEventListener("DOMContentLoaded", () => {
  record();
  new MutationObserver(record).observe(document.body, {
    subtree: true, childList: true, characterData: true,
  });
});
"""


# Helpers ---------------------------------------------------------------------------------


@pytest.fixture
async def conversation_id(user):
    conversation = await sync_to_async(services.conversation_create)(owner=user, title="Streams")
    return conversation.pk


async def logged_in_context(browser, server, user, **options):
    context = await browser.new_context(**options)
    context.set_default_timeout(10_000)
    await context.add_cookies([await sync_to_async(session_cookie_for)(user, server.url)])
    await context.add_init_script(RECORD_TEXTS)
    return context


async def open_conversation(context, server, conversation_id, *, dialogs=None):
    """A page of the conversation whose event stream is live."""
    page = await context.new_page()
    if dialogs is not None:
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(f"{server.url}/assistant/{conversation_id}/")
    await expect(page.get_by_test_id("assistant")).to_have_attribute("data-assistant-state", "live")
    return page


async def two_tabs(browser, server, user, conversation_id):
    """Two pages of the conversation in one browser profile, both live."""
    context = await logged_in_context(browser, server, user)
    return [await open_conversation(context, server, conversation_id) for _ in range(2)]


def turns(page):
    return page.get_by_test_id("assistant-turns").locator("li[data-answer]")


def answer_text(turn):
    return turn.locator("[data-answer-text]")


async def ask(page, text: str) -> None:
    """Type a question and press Enter (the form's own submit, taken over by the client)."""
    await page.get_by_label("Your question").fill(text)
    await page.get_by_label("Your question").press("Enter")


async def answer_id_of(turn) -> int:
    return int(await turn.get_attribute("data-answer"))


async def stored(answer_id: int) -> Answer:
    return await Answer.objects.aget(pk=answer_id)


async def shown_texts(page, answer_id: int) -> list[str]:
    return await page.evaluate("(id) => window.answerTexts[id] || []", str(answer_id))


def assert_only_appended(texts: list[str], final: str) -> None:
    """Every text shown is a beginning of the final one: nothing repeated, nothing undone."""
    assert texts, "the answer was never shown"
    for text in texts:
        assert final.startswith(text), (text, final)


# Streaming -------------------------------------------------------------------------------


async def test_an_answer_streams_in_and_ends_complete_with_the_stored_text(
    browser, assistant_server, fake_upstream, user, conversation_id
):
    await fake_upstream.ascript(tokens=WORDS, token_delay=0.03)
    context = await logged_in_context(browser, assistant_server, user)
    page = await open_conversation(context, assistant_server, conversation_id)
    prompt = page.get_by_label("Your question")
    await prompt.fill("line one")
    await prompt.press("Shift+Enter")  # a new line, not a send
    await prompt.press_sequentially("line two")
    await prompt.press("Enter")

    turn = turns(page).last
    await expect(turn.locator("[data-question-text]")).to_have_text("line one\nline two")
    await expect(turn).to_have_attribute("data-status", "streaming")
    await expect(turn.get_by_role("button", name="Stop")).to_be_visible()
    await expect(prompt).to_have_value("")  # the question was accepted
    await expect(turn).to_have_attribute("data-status", "complete", timeout=ANSWER_MS)

    answer = await stored(await answer_id_of(turn))
    assert answer.text == FULL and answer.status == Answer.Status.COMPLETE
    await expect(answer_text(turn)).to_have_text(FULL)
    await expect(turn).to_have_attribute("data-position", str(len(FULL)))
    texts = await shown_texts(page, answer.pk)
    assert_only_appended(texts, FULL)
    assert len(texts) >= 5, texts  # it grew on screen, frame by frame, not all at once
    await expect(turn.locator("[data-answer-actions] button")).to_have_count(0)
    await expect(page.get_by_test_id("assistant-announcer")).to_have_text("Answer complete.")
    assert page.url == f"{assistant_server.url}/assistant/{conversation_id}/"  # no page load


async def test_a_reload_mid_answer_goes_on_without_a_repeated_or_missing_word(
    browser, assistant_server, fake_upstream, user, conversation_id
):
    await fake_upstream.ascript(tokens=WORDS, token_delay=0.05)
    context = await logged_in_context(browser, assistant_server, user)
    page = await open_conversation(context, assistant_server, conversation_id)
    await ask(page, "Count for me")
    turn = turns(page).last
    await expect(answer_text(turn)).to_contain_text("word8", timeout=ANSWER_MS)
    answer_id = await answer_id_of(turn)

    await page.reload()

    turn = page.locator(f"#answer-{answer_id}")
    before = await answer_text(turn).text_content()
    assert before.startswith("word0") and before != FULL  # the server drew it mid-answer
    await expect(turn).to_have_attribute("data-status", "complete", timeout=ANSWER_MS)
    answer = await stored(answer_id)
    assert answer.text == FULL
    await expect(answer_text(turn)).to_have_text(FULL)
    assert_only_appended(await shown_texts(page, answer_id), FULL)


async def test_stop_keeps_what_was_shown_closes_the_upstream_and_continue_goes_on(
    browser, assistant_server, fake_upstream, user, conversation_id
):
    await fake_upstream.ascripts(
        [{"tokens": WORDS, "token_delay": 0.1}, {"tokens": ["and ", "more."]}]
    )
    context = await logged_in_context(browser, assistant_server, user)
    page = await open_conversation(context, assistant_server, conversation_id)
    await ask(page, "Go on and on")
    turn = turns(page).last
    await expect(answer_text(turn)).to_contain_text("word5", timeout=ANSWER_MS)

    await turn.get_by_role("button", name="Stop").click()

    await expect(turn).to_have_attribute("data-status", "stopped")
    await expect(turn.get_by_test_id("answer-status")).to_have_text("Stopped.")
    record = await fake_upstream.await_disconnected(0, timeout=5)
    assert record["disconnected"]
    answer = await stored(await answer_id_of(turn))
    assert answer.status == Answer.Status.STOPPED
    assert "word5" in answer.text and FULL.startswith(answer.text) and answer.text != FULL
    await expect(answer_text(turn)).to_have_text(answer.text)  # shown and stored agree
    await expect(turn).to_have_attribute("data-position", str(len(answer.text)))
    assert_only_appended(await shown_texts(page, answer.pk), answer.text)

    await turn.get_by_role("button", name="Continue").click()

    follow = turns(page).nth(1)
    await expect(follow).to_have_attribute("data-status", "complete", timeout=ANSWER_MS)
    await expect(answer_text(follow)).to_have_text("and more.")
    await expect(turn.get_by_role("button", name="Continue")).to_have_count(0)


async def test_a_failed_answer_says_why_and_retry_answers_again(
    browser, assistant_server, fake_upstream, user, conversation_id
):
    await fake_upstream.ascripts(
        [{"tokens": WORDS[:5], "error_after": 2}, {"tokens": ["Second ", "try."]}]
    )
    context = await logged_in_context(browser, assistant_server, user)
    page = await open_conversation(context, assistant_server, conversation_id)
    await ask(page, "Fail first")
    turn = turns(page).last
    await expect(turn).to_have_attribute("data-status", "failed", timeout=ANSWER_MS)
    await expect(turn.get_by_test_id("answer-status")).to_contain_text("Failed: ")
    await expect(answer_text(turn)).to_have_text("".join(WORDS[:2]))  # kept what arrived

    await turn.get_by_role("button", name="Retry").click()

    again = turns(page).nth(1)
    await expect(again).to_have_attribute("data-status", "complete", timeout=ANSWER_MS)
    await expect(answer_text(again)).to_have_text("Second try.")
    await expect(again.locator("[data-question-text]")).to_have_text("Fail first")
    await expect(turn.get_by_role("button", name="Retry")).to_have_count(0)


async def test_a_second_tab_follows_the_answer_live(
    browser, assistant_server, fake_upstream, user, conversation_id
):
    await fake_upstream.ascript(tokens=WORDS, token_delay=0.03)
    asking, watching = await two_tabs(browser, assistant_server, user, conversation_id)

    await ask(asking, "Seen everywhere?")

    turn = turns(watching).last
    await expect(turn.locator("[data-question-text]")).to_have_text("Seen everywhere?")
    await expect(turn).to_have_attribute("data-status", "complete", timeout=ANSWER_MS)
    answer_id = await answer_id_of(turn)
    assert (await stored(answer_id)).text == FULL
    for page in (watching, asking):
        await expect(answer_text(page.locator(f"#answer-{answer_id}"))).to_have_text(FULL)
        assert_only_appended(await shown_texts(page, answer_id), FULL)
    assert len(await shown_texts(watching, answer_id)) >= 5  # it streamed there too


async def test_a_stop_in_one_tab_cuts_the_text_another_tab_shows_to_what_was_stopped(
    browser, assistant_server, fake_upstream, user, conversation_id
):
    await fake_upstream.ascript(tokens=WORDS, token_delay=0.1)
    watching, stopping = await two_tabs(browser, assistant_server, user, conversation_id)
    await ask(watching, "Stop me elsewhere")
    turn = turns(stopping).last
    await expect(answer_text(turn)).to_contain_text("word4", timeout=ANSWER_MS)

    await turn.get_by_role("button", name="Stop").click()

    answer_id = await answer_id_of(turn)
    for page in (stopping, watching):
        shown = page.locator(f"#answer-{answer_id}")
        await expect(shown).to_have_attribute("data-status", "stopped")
    answer = await stored(answer_id)
    assert "word4" in answer.text and answer.text != FULL
    for page in (stopping, watching):
        await expect(answer_text(page.locator(f"#answer-{answer_id}"))).to_have_text(answer.text)
    assert_only_appended(await shown_texts(stopping, answer_id), answer.text)


async def test_text_arriving_faster_than_frames_is_written_at_most_once_a_frame(
    browser, live_server_factory, fake_upstream, user, conversation_id
):
    """200 tokens a second, each stored and published on its own (a server of its own,
    flushing every millisecond; uvicorn only): the page writes the text once a frame."""
    server = live_server_factory(
        "uvicorn", LLM_BASE_URL=fake_upstream.base_url, ASSISTANT_FLUSH_MILLISECONDS="1"
    )
    tokens = [f"t{i} " for i in range(400)]
    await fake_upstream.ascript(tokens=tokens, token_delay=0.005)
    context = await logged_in_context(browser, server, user)
    page = await open_conversation(context, server, conversation_id)
    await page.evaluate(COUNT_FRAMES_AND_WRITES)
    await ask(page, "Fast, please")
    turn = turns(page).last
    await expect(turn).to_have_attribute("data-status", "complete", timeout=ANSWER_MS)
    await expect(answer_text(turn)).to_have_text("".join(tokens))
    counts = await page.evaluate("() => window.frameCounts")
    assert counts["writes"] >= 10, counts  # it did stream
    assert counts["writes"] <= counts["frames"] + 2, counts


# Counts animation frames, and writes to answer text, from now on.
COUNT_FRAMES_AND_WRITES = """() => {
  window.frameCounts = { frames: 0, writes: 0 };
  const tick = () => { window.frameCounts.frames += 1; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new MutationObserver((records) => {
    for (const record of records) {
      const text = record.target.parentElement?.matches("[data-answer-text]");
      if (text) window.frameCounts.writes += 1;
    }
  }).observe(document.body, { subtree: true, characterData: true });
}"""


# Safety and refusals ---------------------------------------------------------------------


async def test_markup_in_an_answer_or_a_question_is_shown_as_text_and_runs_nothing(
    browser, assistant_server, fake_upstream, user, conversation_id
):
    tokens = ["Look: ", "<img src=x ", "onerror=alert(1)>", " and <b>bold</b>"]
    await fake_upstream.ascript(tokens=tokens)
    dialogs: list[str] = []
    context = await logged_in_context(browser, assistant_server, user)
    page = await open_conversation(context, assistant_server, conversation_id, dialogs=dialogs)
    question = "<script>alert(2)</script><img src=y onerror=alert(3)>"
    await ask(page, question)

    turn = turns(page).last
    await expect(turn).to_have_attribute("data-status", "complete", timeout=ANSWER_MS)
    for _ in range(2):  # as streamed, then as the server draws it
        await expect(answer_text(turn)).to_have_text("".join(tokens))
        await expect(turn.locator("[data-question-text]")).to_have_text(question)
        assert await turns(page).locator("img, b, script").count() == 0
        await page.reload()
        turn = turns(page).last
    assert dialogs == []


async def test_asking_over_the_concurrent_limit_says_so_and_links_the_running_answer(
    browser, assistant_server, fake_upstream, user, conversation_id
):
    stalled = {"tokens": WORDS, "stall_after": 2, "stall_seconds": None}
    await fake_upstream.ascripts([stalled] * settings.ASSISTANT_MAX_CONCURRENT)
    context = await logged_in_context(browser, assistant_server, user)
    page = await open_conversation(context, assistant_server, conversation_id)
    for number in range(settings.ASSISTANT_MAX_CONCURRENT):
        await ask(page, f"Running {number}")
        await expect(turns(page)).to_have_count(number + 1)
        await expect(answer_text(turns(page).last)).to_have_text("".join(WORDS[:2]))
    first_id = await answer_id_of(turns(page).first)

    await ask(page, "One too many")

    notice = page.get_by_test_id("assistant-notice")
    await expect(notice).to_contain_text("most answers running at once")
    await expect(notice.get_by_role("link", name="See the running answer")).to_have_attribute(
        "href", re.compile(rf"/assistant/{conversation_id}/#answer-{first_id}$")
    )
    await expect(page.get_by_label("Your question")).to_have_value("One too many")
    await expect(turns(page)).to_have_count(settings.ASSISTANT_MAX_CONCURRENT)
    for index in range(settings.ASSISTANT_MAX_CONCURRENT):  # leave nothing running
        await turns(page).nth(index).get_by_role("button", name="Stop").click()
        await expect(turns(page).nth(index)).to_have_attribute("data-status", "stopped")


async def test_asking_with_the_days_budget_spent_says_when_it_resets(
    browser, assistant_server, user, conversation_id
):
    await DailyUsage.objects.acreate(
        user=user, day=timezone.now().date(), tokens=settings.ASSISTANT_DAILY_TOKENS
    )
    context = await logged_in_context(browser, assistant_server, user)
    page = await open_conversation(context, assistant_server, conversation_id)
    await ask(page, "Anything left?")
    notice = page.get_by_test_id("assistant-notice")
    await expect(notice).to_contain_text("today's assistant budget")
    await expect(notice).to_contain_text("It resets at")
    await expect(turns(page)).to_have_count(0)


async def test_a_question_refused_for_its_length_or_a_lost_login_says_why(
    browser, assistant_server, user, conversation_id
):
    context = await logged_in_context(browser, assistant_server, user)
    page = await open_conversation(context, assistant_server, conversation_id)
    notice = page.get_by_test_id("assistant-notice")
    too_long = "x" * (settings.ASSISTANT_MAX_PROMPT_LENGTH + 1)
    await ask(page, too_long)
    await expect(notice).to_have_text(
        f"The question is longer than {settings.ASSISTANT_MAX_PROMPT_LENGTH} characters."
    )
    await expect(page.get_by_label("Your question")).to_have_value(too_long)

    await context.clear_cookies(name=settings.SESSION_COOKIE_NAME)  # logged out elsewhere
    await ask(page, "Still there?")
    await expect(notice).to_have_text("Log in to use the assistant.")
    await expect(turns(page)).to_have_count(0)


async def test_a_server_crash_mid_answer_leaves_it_interrupted_on_the_page_exactly(
    browser, live_server_factory, fake_upstream, user, conversation_id
):
    """The page's streams break with the server: it reconnects with backoff, resumes after
    what it shows, and ends with the stored text, marked interrupted (uvicorn only: a
    server of its own, killed and started again)."""
    server = live_server_factory(
        "uvicorn", LLM_BASE_URL=fake_upstream.base_url, ASSISTANT_INTERRUPTED_AFTER_SECONDS="3"
    )
    await fake_upstream.ascript(tokens=WORDS, token_delay=0.1)
    context = await logged_in_context(browser, server, user)
    stream_path = f"/assistant/{conversation_id}/stream"
    opened = []
    context.on("request", lambda r: opened.append(r.url) if stream_path in r.url else None)
    page = await open_conversation(context, server, conversation_id)
    await ask(page, "Survive a restart")
    turn = turns(page).last
    await expect(answer_text(turn)).to_contain_text("word3", timeout=ANSWER_MS)
    answer_id = await answer_id_of(turn)

    os.killpg(server.process.pid, signal.SIGKILL)  # a crash: nothing finishes the answer
    await sync_to_async(server.process.wait)()
    await sync_to_async(server.start)()  # on the same port

    await expect(turn).to_have_attribute("data-status", "interrupted", timeout=30_000)
    await expect(turn.get_by_test_id("answer-status")).to_contain_text("Interrupted: ")
    await expect(turn.get_by_role("button", name="Continue")).to_be_visible()
    answer = await stored(answer_id)
    assert answer.status == Answer.Status.INTERRUPTED and "word3" in answer.text
    await expect(answer_text(turn)).to_have_text(answer.text)
    assert_only_appended(await shown_texts(page, answer_id), answer.text)
    await expect(page.get_by_test_id("assistant")).to_have_attribute("data-assistant-state", "live")
    assert len(opened) >= 2 and f"after={answer_id}%3A" in opened[-1], opened


async def test_the_page_asks_and_stops_without_javascript(
    browser, assistant_server, fake_upstream, user, conversation_id
):
    await fake_upstream.ascript(tokens=WORDS, stall_after=3, stall_seconds=None)
    context = await logged_in_context(browser, assistant_server, user, java_script_enabled=False)
    page = await context.new_page()
    await page.goto(f"{assistant_server.url}/assistant/{conversation_id}/")
    await page.get_by_label("Your question").fill("Plain HTML")
    await page.get_by_role("button", name="Ask").click()

    turn = turns(page).last
    answer_id = await answer_id_of(turn)
    assert page.url.endswith(f"/assistant/{conversation_id}/#answer-{answer_id}")
    await expect(turn.locator("[data-question-text]")).to_have_text("Plain HTML")
    await turn.get_by_role("button", name="Stop").click()
    turn = page.locator(f"#answer-{answer_id}")
    await expect(turn).to_have_attribute("data-status", "stopped")
    await expect(turn.get_by_role("button", name="Continue")).to_be_visible()
    await fake_upstream.await_disconnected(0, timeout=5)
