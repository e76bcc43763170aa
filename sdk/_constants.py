"""Defaults of the SDK: timeouts, the retry policy, and how `classify` splits big inputs."""

from __future__ import annotations

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# Seconds per request (connect, read, write and pool each); override per client or per call.
DEFAULT_TIMEOUT = 60.0
# Retries after the first attempt, for connection errors, 408, 429 and 5xx.
DEFAULT_MAX_RETRIES = 2
# Exponential backoff between retries: 0.5 s, 1 s, 2 s, ... capped at 8 s (minus up to 25 % jitter).
# A Retry-After header replaces the backoff, capped at MAX_RETRY_DELAY as well.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
# `classify` sends lists longer than this as several requests ...
DEFAULT_CHUNK_SIZE = 32
# ... with at most this many in flight at once.
DEFAULT_CONCURRENCY = 4
# `classify(progress=None)` shows a tqdm bar only above this many images.
PROGRESS_THRESHOLD = 64
