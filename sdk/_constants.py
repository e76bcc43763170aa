"""Defaults of the SDK: timeouts, the retry policy, and how chunked calls split big inputs."""

from __future__ import annotations

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# Seconds per request (connect, read, write and pool each); override per client or per call.
DEFAULT_TIMEOUT = 60.0
# Retries after the first attempt, for connection errors, 408, 429 and 5xx.
DEFAULT_MAX_RETRIES = 2
# The client's own exponential backoff between retries: 0.5 s, 1 s, 2 s, ... capped at
# MAX_RETRY_DELAY (minus up to 25 % jitter). The cap is for guesses the client makes itself.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
# A Retry-After header (seconds or an HTTP date, on 408, 429 or 5xx) replaces the backoff and is
# obeyed as the server says, even above MAX_RETRY_DELAY: retrying a shedding server before it
# asked only adds to its load and burns a retry. A server asking for more than MAX_RETRY_AFTER
# seconds is not waited for at all: the call raises the error at once (`ServerOverloaded`,
# whose `retry_after` says when to come back) instead of blocking the caller for minutes. Each
# such wait still counts against `max_retries`.
MAX_RETRY_AFTER = 60.0
# `classify`, `detect_anomalies` and `segment` send lists longer than their `chunk_size` as
# several requests ...
DEFAULT_CHUNK_SIZE = 32
# ... with at most this many in flight at once (`concurrency=`).
DEFAULT_CONCURRENCY = 4
# With `progress=None` a tqdm bar shows only above this many images.
PROGRESS_THRESHOLD = 64
