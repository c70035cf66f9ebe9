"""channels-redis' layer, with its background cleanups' failures counted, not leaked.

After each receive, channels-redis starts a task that removes the message from its backup
queue, and nobody awaits it: when Redis is unreachable each such task ends with an
exception that asyncio logs at ERROR, with a traceback, as "Task exception was never
retrieved", one per message received around a Redis restart. Here the failure is counted
in the channel layer's outage instead (``streamsite.streaming.outage``). The message stays
in the backup queue and channels-redis hands it over again on a later receive: the hub
then delivers it twice, which subscribers tolerate (they skip ids they have sent).
"""

from channels_redis.core import RedisChannelLayer as BaseRedisChannelLayer

from streamsite.streaming.outage import CHANNEL_LAYER, is_connection_error


class RedisChannelLayer(BaseRedisChannelLayer):
    """The channel layer of every server process when ``REDIS_URL`` is set."""

    async def _clean_receive_backup(self, index, channel):
        try:
            await super()._clean_receive_backup(index, channel)
        except Exception as error:
            if not is_connection_error(error):
                raise
            CHANNEL_LAYER.failed("receive backup cleanups", error)
