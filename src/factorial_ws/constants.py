"""Names and numbers shared by every process: queues, Redis keys, protocol strings."""

from typing import Final

# Queues and tasks. Numbers up to SOFT_QUEUE_MAX_NUMBER go to the soft queue (seed: "up to 1000").
SOFT_QUEUE: Final = "soft"
HARD_QUEUE: Final = "hard"
QUEUES: Final = (SOFT_QUEUE, HARD_QUEUE)
SOFT_QUEUE_MAX_NUMBER: Final = 1000
# MAX_NUMBER's default: the largest factorial computed (1000000! has 5,565,709 digits).
DEFAULT_MAX_NUMBER: Final = 1_000_000
SOFT_TASK_NAME: Final = "factorial_ws.factorial_soft"
HARD_TASK_NAME: Final = "factorial_ws.factorial_hard"
TASK_NAME_BY_QUEUE: Final = {SOFT_QUEUE: SOFT_TASK_NAME, HARD_QUEUE: HARD_TASK_NAME}

# Redis keys. Celery's result backend owns RESULT_KEY_PREFIX (it also PUBLISHes each stored
# result on a channel of the same name); everything else of ours lives under KEY_PREFIX.
RESULT_KEY_PREFIX: Final = "celery-task-meta-"
KEY_PREFIX: Final = "factorial-ws:"
SUBMITTED_KEY_PREFIX: Final = KEY_PREFIX + "task:"  # marks an id as known once it is sent
ATTEMPTS_KEY_PREFIX: Final = KEY_PREFIX + "attempts:"  # worker-side start count per task
HANDED_BACK_KEY_PREFIX: Final = KEY_PREFIX + "handed-back:"  # held at a worker's shutdown, not lost
WORKERS_KEY_PREFIX: Final = KEY_PREFIX + "workers:"  # sorted set per queue: hostname -> last seen
# A lost computation (its worker killed outright) is told by these: a worker process's run (a
# random id per start, so a worker restarted under the same hostname is another run) lives while
# its heartbeat does, and a task started records the run that computes it.
WORKER_RUN_KEY_PREFIX: Final = KEY_PREFIX + "worker-run:"  # run id -> hostname, expires when stale
RUNNING_KEY_PREFIX: Final = KEY_PREFIX + "running:"  # task id -> the worker run computing it
REPLACES_KEY_PREFIX: Final = KEY_PREFIX + "replaces:"  # task id -> the lost tasks it stands in for
NUMBER_KEY_PREFIX: Final = KEY_PREFIX + "number:"  # number -> the task that computes it (reuse)
# A catalog task's parameters (a digest of its share key) -> the task that computes them (reuse).
SHARED_KEY_PREFIX: Final = KEY_PREFIX + "shared:"
# The budgets of a queue (gateway/submit.lua): a list beside it of "<cost> <address>" per task
# pushed, the cost still queued by address (a hash), and in all.
QUEUED_LEDGER_KEY_PREFIX: Final = KEY_PREFIX + "queued:"
QUEUED_COSTS_KEY_PREFIX: Final = KEY_PREFIX + "queued-cost-by-address:"
QUEUED_COST_KEY_PREFIX: Final = KEY_PREFIX + "queued-cost:"
# A hash per client address: the result bytes its tasks stored, by time bucket (worker/result_backend.py).
STORED_BYTES_KEY_PREFIX: Final = KEY_PREFIX + "stored-bytes:"
# A channel per task: the workers' result backend announces each stored result there.
NOTE_CHANNEL_PREFIX: Final = KEY_PREFIX + "done:"
# Hash: a child of `up` that keeps failing -> what /healthz says of it. Rewritten by `up` every
# SUPERVISOR_REPORT_S while any child fails, and gone SUPERVISOR_REPORT_TTL_S after `up` is.
SUPERVISOR_PROBLEMS_KEY: Final = KEY_PREFIX + "supervisor-problems"
SUPERVISOR_REPORT_S: Final = 1.0
SUPERVISOR_REPORT_TTL_S: Final = 5
CANCELLED_KEY_PREFIX: Final = KEY_PREFIX + "cancelled:"  # marks a task id cancelled by a client
CANCELLED_KEY: Final = KEY_PREFIX + "cancelled"  # sorted set: cancelled task id -> when (workers load it)
# Workers read new entries of CANCELLED_KEY this often, in case they missed a revoke broadcast.
CANCELLED_RELOAD_S: Final = 2.0

# kombu's Redis transport keeps every message a worker has taken and not yet acknowledged (tasks
# are acknowledged late: reserved or running) in this hash, as JSON [message, exchange, routing key].
KOMBU_UNACKED_KEY: Final = "unacked"

# A channel nobody publishes on: it keeps a gateway's result subscription open while no task waits.
RESULTS_IDLE_CHANNEL: Final = KEY_PREFIX + "hub"

# A task message with this header set asks its worker to store Celery's STARTED state.
PROGRESS_HEADER: Final = "factorial_ws_progress"
# The client address a task message was sent for: its worker charges the stored result to it.
CLIENT_HEADER: Final = "factorial_ws_client"

# Workers refresh their heartbeat this often; a worker unseen for WORKER_STALE_S is gone.
WORKER_HEARTBEAT_S: Final = 5.0
WORKER_STALE_S: Final = 15.0
# A worker run's key (WORKER_RUN_KEY_PREFIX) is refreshed this often and lapses this long after
# its last refresh: a computation killed with its worker is known lost before a restarted worker
# is up (a Celery worker takes 2-5 s to start), while a pool that holds the GIL in GMP (threads,
# solo: 1000000! takes about 1 s) does not pass for dead.
WORKER_RUN_BEAT_S: Final = 1.0
WORKER_RUN_LEASE_S: Final = 5.0

# Error messages. The first three are the seed's, kept to the letter.
JSON_DECODE_ERROR: Final = "JSON decode error"
UNKNOWN_TASK: Final = "Unknown task"
TIMEOUT_ERROR: Final = "Timeout error"
INVALID_REQUEST: Final = "Invalid request: "
UNKNOWN_TASK_ID: Final = "Unknown task id"
SERVICE_UNAVAILABLE: Final = "Service unavailable"
SERVER_BUSY: Final = "Server busy"
TOO_MANY_IN_FLIGHT: Final = "Too many tasks in flight"
RATE_LIMITED: Final = "Rate limit exceeded"
TASK_FAILED: Final = "Task failed"
RESULT_TOO_LARGE: Final = "Task failed: its result is larger than its task allows"
WORKER_LOST: Final = "Task failed: its worker died on every attempt"
# Redis was full (maxmemory, noeviction) when the worker came to store the result.
STORAGE_FULL: Final = "Task failed: storage full"
TASK_REVOKED: Final = "Task revoked"
TASK_CANCELLED: Final = "Task cancelled"
TASK_NOT_CANCELLED: Final = "Task not cancelled: other requests wait for it"
TASK_NOT_YOURS: Final = "Task not cancelled: this connection neither created it nor waits for it"
HARD_QUEUE_FULL: Final = "Server busy: too many large tasks queued"
CLIENT_BUSY: Final = "Too many large tasks queued from this address"
STORAGE_NEARLY_FULL: Final = "Server busy: storage nearly full"
CLIENT_STORED_TOO_MUCH: Final = "Too much stored from this address; retry later"

DEFAULT_PORT: Final = 25000
