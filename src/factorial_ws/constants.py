"""Names and numbers shared by every process: queues, Redis keys, protocol strings."""

from typing import Final

# Queues and tasks. Numbers up to SOFT_QUEUE_MAX_NUMBER go to the soft queue (seed: "up to 1000").
SOFT_QUEUE: Final = "soft"
HARD_QUEUE: Final = "hard"
QUEUES: Final = (SOFT_QUEUE, HARD_QUEUE)
SOFT_QUEUE_MAX_NUMBER: Final = 1000
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
NUMBER_KEY_PREFIX: Final = KEY_PREFIX + "number:"  # number -> the task that computes it (reuse)
CLIENT_KEY_PREFIX: Final = KEY_PREFIX + "client:"  # sorted set per address: its unfinished hard tasks
# A channel per task: the workers' result backend announces each stored result there.
NOTE_CHANNEL_PREFIX: Final = KEY_PREFIX + "done:"
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

# Workers refresh their heartbeat this often; a worker unseen for WORKER_STALE_S is gone.
WORKER_HEARTBEAT_S: Final = 5.0
WORKER_STALE_S: Final = 15.0

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
WORKER_LOST: Final = "Task failed: its worker died on every attempt"
TASK_REVOKED: Final = "Task revoked"
TASK_CANCELLED: Final = "Task cancelled"
TASK_NOT_CANCELLED: Final = "Task not cancelled: other requests wait for it"
TASK_NOT_YOURS: Final = "Task not cancelled: this connection neither created it nor waits for it"
HARD_QUEUE_FULL: Final = "Server busy: too many large tasks queued"
CLIENT_BUSY: Final = "Too many large tasks queued from this address"

DEFAULT_PORT: Final = 25000
