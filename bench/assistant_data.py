"""The assistant benchmark's database: a history of conversations, counters, and checks.

Needs Django set up (``bench.data.setup_django``). History is written around the services
(one ``INSERT ... SELECT generate_series`` per table), as a site that has run for a while
would hold it: every benchmark user owns conversations of several answered questions.
"""

from __future__ import annotations

import zlib

#: An answer of the history: this sentence repeated to 400-2,000 characters.
HISTORY_SENTENCE = "Streams resume from the last event id the client saw, so nothing is lost. "


def seed_history(user_ids: list[int], conversations: int, turns: int) -> dict:
    """Give ``user_ids`` (in turn) ``conversations`` conversations of ``turns`` answered
    questions each, finished a month ago; return what was written."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM assistant_conversation")
        first_conversation = cursor.fetchone()[0]
        cursor.execute(
            """
            INSERT INTO assistant_conversation (owner_id, title, created_at, updated_at)
            SELECT (%s::int[])[1 + g %% cardinality(%s::int[])],
                   'Earlier conversation ' || g,
                   now() - interval '40 days' + g * interval '1 minute',
                   now() - interval '30 days' + g * interval '1 minute'
            FROM generate_series(1, %s) AS g
            """,
            [user_ids, user_ids, conversations],
        )
        cursor.execute("SELECT coalesce(max(id), 0) FROM assistant_question")
        first_question = cursor.fetchone()[0]
        cursor.execute(
            """
            INSERT INTO assistant_question (conversation_id, author_id, text, client_id, created_at)
            SELECT c.id, c.owner_id,
                   'Earlier question ' || t || ': how does a stream resume after a cut?',
                   gen_random_uuid(), c.created_at + t * interval '1 minute'
            FROM assistant_conversation AS c, generate_series(1, %s) AS t
            WHERE c.id > %s
            ORDER BY c.id, t
            """,
            [turns, first_conversation],
        )
        cursor.execute(
            """
            INSERT INTO assistant_answer
                (conversation_id, question_id, owner_id, status, text, position, model,
                 finish_reason, error, prompt_tokens, completion_tokens, usage_estimated,
                 first_token_ms, started_at, finished_at, alive_at, room_key)
            SELECT q.conversation_id, q.id, q.author_id, 'complete', a.text,
                   char_length(a.text), 'bench-model', 'stop', '', 300,
                   char_length(a.text) / 4, false, 250,
                   q.created_at, q.created_at + interval '20 seconds',
                   q.created_at + interval '20 seconds', ''
            FROM assistant_question AS q,
                 LATERAL (SELECT left(repeat(%s, 30), 400 + (q.id::int * 37) %% 1600) AS text) a
            WHERE q.id > %s
            ORDER BY q.id
            """,
            [HISTORY_SENTENCE, first_question],
        )
        answers = cursor.rowcount
        cursor.execute(
            "SELECT coalesce(sum(char_length(text)), 0) FROM assistant_answer "
            "WHERE question_id > %s",
            [first_question],
        )
        characters = cursor.fetchone()[0]
        cursor.execute("ANALYZE assistant_conversation, assistant_question, assistant_answer")
    return {
        "conversations": conversations,
        "answers": answers,
        "turns_per_conversation": turns,
        "users": len(user_ids),
        "answer_characters": int(characters),
    }


def latest_conversations(user_ids: list[int]) -> dict[int, tuple[int, str]]:
    """Each user's most recent conversation, and the stream cursor after its last answer
    (``<answer>:<position>``, what the conversation page hands its stream)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT ON (c.owner_id) c.owner_id, c.id, a.id, a.position
            FROM assistant_conversation AS c
            JOIN LATERAL (
                SELECT id, position FROM assistant_answer
                WHERE conversation_id = c.id ORDER BY id DESC LIMIT 1
            ) AS a ON true
            WHERE c.owner_id = ANY(%s)
            ORDER BY c.owner_id, c.updated_at DESC, c.id DESC
            """,
            [user_ids],
        )
        return {owner: (conversation, f"{a}:{p}") for owner, conversation, a, p in cursor}


def write_counters(database: str) -> dict:
    """Counters of writes so far: answer rows inserted and updated, answer parts inserted
    (a row per answer per flush), and the database's commits. PostgreSQL publishes a busy
    backend's counts about once a second, an idle one's within 10 s, and an exiting one's
    at once (read after the server stops)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, n_tup_upd, n_tup_ins FROM pg_stat_user_tables "
            "WHERE relname IN ('assistant_answer', 'assistant_answerpart')"
        )
        counts = {name: (updated, inserted) for name, updated, inserted in cursor}
        cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [database])
        commits = cursor.fetchone()[0]
    updated, inserted = counts.get("assistant_answer", (0, 0))
    return {
        "answer_updates": updated,
        "answer_inserts": inserted,
        "part_inserts": counts.get("assistant_answerpart", (0, 0))[1],
        "commits": commits,
    }


def counters_delta(before: dict, after: dict) -> dict:
    return {key: after[key] - before[key] for key in before}


def answers(answer_ids) -> dict[int, dict]:
    """Status, position, text checksum and text (so far) of answers, by id."""
    from assistant.selectors import answer_states

    return {
        pk: {
            "status": state["status"],
            "position": state["position"],
            "crc": zlib.crc32(state["text"].encode()),
            "text": state["text"],
        }
        for pk, state in answer_states(answer_ids).items()
    }


def answers_after(answer_id: int) -> list[int]:
    """Ids of the answers created after ``answer_id`` (what a run asked)."""
    from assistant.models import Answer

    return list(Answer.objects.filter(pk__gt=answer_id).order_by("pk").values_list("pk", flat=True))


def last_answer_id() -> int:
    from assistant.models import Answer

    return Answer.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
