"""Berth's Python client: isolated per-user container sessions on Docker.

    from berth import Berth

    with Berth() as berth:                      # BERTH_URL and BERTH_TOKEN
        session = berth.sessions.create()
        print(session.exec("echo hi").stdout)
        session.files.write("notes.txt", "hello")
        session.delete()

`AsyncBerth` is the same API for asyncio: await each call, `async for` each stream.
"""

from . import client, errors, models
from .client import *  # noqa: F403
from .errors import *  # noqa: F403
from .models import *  # noqa: F403

__all__ = client.__all__ + errors.__all__ + models.__all__
