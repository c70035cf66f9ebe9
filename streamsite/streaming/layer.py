"""channels-redis' layer, with batched receives and its background cleanups' failures counted.

**Batched receives.** channels-redis takes one message per receive, in three round trips
(restore the backup queue, ``BZPOPMIN``, back it up) and a fourth after it (clean the
backup). A process' hub is one channel's only receiver: when publishes arrive faster
than it hands them out, they wait in Redis and it took them one at a time, each after
those round trips, while the streams were written to one message at a time (one write,
one system call per stream and message). ``receive_batch`` takes the first message as
``receive`` does, then whatever else is already waiting on the channel, up to a limit, in
one more round trip: backed up in the same script as it is popped, as channels-redis
backs up, so a cancelled receive loses nothing (the next receive restores the backup).
The hub hands out the batch in one step of the event loop, and each stream writes what it
got from the batch at once (``notifications.streams.DirectDelivery``).

**Cleanups.** After each receive, channels-redis starts a task that removes the message
from its backup queue, and nobody awaits it: when Redis is unreachable each such task ends
with an exception that asyncio logs at ERROR, with a traceback, as "Task exception was
never retrieved", one per message received around a Redis restart. Here the failure is
counted in the channel layer's outage instead (``streamsite.streaming.outage``). The
message stays in the backup queue and channels-redis hands it over again on a later
receive: the hub then delivers it twice, which subscribers tolerate (they skip ids they
have sent).
"""

import asyncio

from channels_redis.core import RedisChannelLayer as BaseRedisChannelLayer

from streamsite.streaming.outage import CHANNEL_LAYER, is_connection_error

#: Messages one ``receive_batch`` returns at most.
RECEIVE_BATCH = 32

# Pop up to ARGV[1] messages off the channel (KEYS[1]) and add them to its backup queue
# (KEYS[2]) with their scores, atomically, as channels-redis' BZPOPMIN + ZADD do for one.
_POP_WAITING = """
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
for i = 1, #popped, 2 do
    redis.call('ZADD', KEYS[2], popped[i + 1], popped[i])
end
return popped
"""


class RedisChannelLayer(BaseRedisChannelLayer):
    """The channel layer of every server process when ``REDIS_URL`` is set."""

    async def receive_batch(self, channel: str, limit: int = RECEIVE_BATCH) -> list[dict]:
        """The next message of ``channel`` (waiting for it as ``receive`` does), then those
        already waiting behind it, in order, up to ``limit`` in all.

        For a process-specific channel (``new_channel``) with one receiver: the hub's. A
        message for another channel of this process is left in channels-redis' local
        buffer for that channel's ``receive``.
        """
        messages = [await self.receive(channel)]
        if "!" not in channel or limit <= 1:
            return messages
        local = self.receive_buffer.get(channel)
        if local is not None and not local.empty():
            # Another receive of this process fetched them for us: those first, in order.
            while not local.empty() and len(messages) < limit:
                messages.append(local.get_nowait())
            if local.empty():
                del self.receive_buffer[channel]
            return messages
        real_channel = self.non_local_name(channel)
        channel_key = self.prefix + real_channel
        backup_key = self._backup_channel_name(channel_key)
        connection = self.connection(self.consistent_hash(real_channel))
        # Held until the backup is cleaned: the next receive restores the backup queue
        # first, which must not hand these out again.
        await self.receive_clean_locks.acquire(channel_key)
        try:
            popped = await connection.eval(_POP_WAITING, 2, channel_key, backup_key, limit - 1)
        except BaseException:
            self.receive_clean_locks.release(channel_key)
            raise
        members = popped[0::2]
        if not members:
            self.receive_clean_locks.release(channel_key)
            return messages
        # From here to the return nothing awaits: the batch cannot be lost to a cancel.
        for member in members:
            message = self.deserialize(member)
            # A group send names every channel of this process it is for (as receive does).
            targets = message.pop("__asgi_channel__", channel)
            for target in targets if isinstance(targets, list) else (targets,):
                if target == channel:
                    messages.append(message)
                else:
                    self.receive_buffer[target].put_nowait(message)
        cleaner = asyncio.ensure_future(self._clean_batch_backup(connection, backup_key, members))
        self.receive_cleaners.append(cleaner)

        def cleaned(task) -> None:
            self.receive_cleaners.remove(task)
            self.receive_clean_locks.release(channel_key)

        cleaner.add_done_callback(cleaned)
        return messages

    async def _clean_batch_backup(self, connection, backup_key: str, members: list) -> None:
        try:
            await connection.zrem(backup_key, *members)
        except Exception as error:
            if not is_connection_error(error):
                raise
            CHANNEL_LAYER.failed("receive backup cleanups", error)

    async def _clean_receive_backup(self, index, channel):
        try:
            await super()._clean_receive_backup(index, channel)
        except Exception as error:
            if not is_connection_error(error):
                raise
            CHANNEL_LAYER.failed("receive backup cleanups", error)
