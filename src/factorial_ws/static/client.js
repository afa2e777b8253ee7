// factorial-ws client for browsers, an ES module served by the gateway at /client.js.
//
//   import { FactorialClient } from "http://localhost:25000/client.js";
//
//   const client = new FactorialClient();       // the gateway this module came from
//   const n = await client.factorial(30);       // 265252859812191058636308480000000n (a BigInt)
//   const digits = await client.factorial(5000, { digits: true });   // "4228577926…" (a string)
//
//   const task = client.submit(300000, { digits: true, progress: true });
//   const taskId = await task.accepted;         // once the gateway has acked it
//   task.addEventListener("statechange", () => console.log(task.state, task.ahead));
//   const result = await task.result;           // (task.cancel() takes it back)
//
//   const again = await client.lookup(taskId, { digits: true });   // from any page, any gateway
//   const watched = client.watch(taskId, { progress: true });       // a Task, as submit() gives
//   const cancelled = await client.cancel(taskId);   // true, or false if it had ended first
//
//   const counts = await client.call("count_words", { text: "a b a" });   // a catalog task: {a: 2, b: 1}
//   const job = client.submitCall("slow_count", { n: 10 }, { progress: true });   // a Task
//   job.addEventListener("statechange", () => console.log(job.state, job.info));  // "progress", {current: 3, total: 10}
//   const tasks = await (await fetch("/tasks")).json();   // the catalog: name -> its params' JSON Schema
//
// One WebSocket carries every request; each request has an id that every reply echoes, so
// replies are matched whatever order they come in. When the socket closes (gateway restart,
// network) it is opened again after a growing, jittered delay, and every task still awaited is
// asked for again: one the gateway acked is looked up by its task id, one never acked is sent
// again. A "Timeout error" after the gateway confirmed it waits (ack or "pending") only means
// it stopped waiting: the task is looked up again. JSON.parse would turn a result into a float,
// so results are read from the frame text: exact, as a BigInt or as the decimal digits.

const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 4000, 8000];
// Frames are paced just under the gateway's default rate limit (200/s, bursts of 400), so a
// page that sends many requests at once is not refused.
const RATE_LIMIT_PER_S = 180;
const RATE_LIMIT_BURST = 360;
const TIMEOUT_ERROR = "Timeout error";
const TASK_CANCELLED = "Task cancelled";
const RATE_LIMITED = "Rate limit exceeded";
// "Not now" errors: a task the client asks for again by itself is asked again later.
const TRANSIENT_ERRORS = new Set([
  "Service unavailable", "Server busy", "Server busy: storage nearly full", "Rate limit exceeded",
  "Too many tasks in flight",
]);
// A task's own outcome: the answer to a cancel of a task that had ended first (a catalog
// task's failure names its exception: "Task failed: ValueError").
const OUTCOME_ERRORS = new Set(["Task failed", "Task failed: its worker died on every attempt",
                                "Task failed: storage full", TIMEOUT_ERROR, "Task revoked",
                                TASK_CANCELLED]);
const isOutcomeError = (message) => OUTCOME_ERRORS.has(message) || message.startsWith("Task failed: ");

// Error names, after the protocol's messages (the same names as the Python library's classes).
const ERROR_NAMES = new Map([
  ["JSON decode error", "JSONDecodeFailed"],
  ["Unknown task", "UnknownTask"],
  ["Timeout error", "TaskTimeout"],
  ["Unknown task id", "UnknownTaskId"],
  ["Service unavailable", "ServiceUnavailable"],
  ["Server busy", "ServerBusy"],
  ["Too many tasks in flight", "TooManyInFlight"],
  ["Rate limit exceeded", "RateLimited"],
  ["Task failed", "TaskFailed"],
  ["Task failed: its worker died on every attempt", "WorkerLost"],
  ["Task failed: storage full", "StorageFull"],
  ["Server busy: storage nearly full", "StorageNearlyFull"],
  ["Task revoked", "TaskRevoked"],
  [TASK_CANCELLED, "TaskCancelled"],
  ["Task not cancelled: other requests wait for it", "TaskNotCancelled"],
  ["Task not cancelled: this connection neither created it nor waits for it", "TaskNotCancelled"],
]);

/** An error reply: `message` is the gateway's text, `name` says which (e.g. "UnknownTaskId";
 *  "FactorialWSError" for a message this version does not know), `taskId` when it has one. */
export class FactorialWSError extends Error {
  constructor(message, taskId = null) {
    super(message);
    this.name = message.startsWith("Invalid request: ")
      ? "InvalidRequest"
      : ERROR_NAMES.get(message) || (message.startsWith("Task failed: ") ? "TaskFailed" : "FactorialWSError");
    this.taskId = taskId;
  }
}

// A success carries the factorial as a JSON number: its digits are cut out of the frame text
// and the rest is parsed with a stand-in.
const RESULT_NUMBER = /"result":\s*(\d+)/;

/** A reply frame as an object; a success's `result` is its digits, as a string. */
export function parseReply(text) {
  const match = RESULT_NUMBER.exec(text);
  if (!match) return JSON.parse(text);
  const end = match.index + match[0].length;
  const reply = JSON.parse(text.slice(0, match.index) + '"result": 0' + text.slice(end));
  reply.result = match[1];
  return reply;
}

/** The JSON text of `number`, exact: a BigInt or an integer-looking string goes as written
 *  (however many digits); anything else as JSON, for the gateway to say what is wrong with it. */
function numberText(number) {
  if (typeof number === "bigint") return number.toString();
  if (typeof number === "string" && /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(number)) return number;
  return JSON.stringify(number);
}

/** The gateway's WebSocket URL for a page at `location` (same host, wss on https). */
export function gatewayUrl(location, token = null) {
  const url = new URL(location.href || location);
  const scheme = url.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${url.host}/` + (token ? `?token=${encodeURIComponent(token)}` : "");
}

/** One request: a factorial, a catalog task's call (`call`: its type and parameters), or a
 *  lookup (or a cancel, which `client.cancel` makes). A call's result is any JSON value, and
 *  with `progress` its state also goes "progress" at each of the task's own states (`info`:
 *  the state's meta). Events:
 *  "statechange": `state` is "sent", "pending" (the gateway has the task), with `progress`
 *  also "queued" (`ahead`: tasks before it in its queue when it was sent) and "started" (a
 *  worker runs it), and in the end "done", "error" or "cancelled". `accepted` resolves to the
 *  task id once known; `result` to the result (a cancel's: true, or false if the task had
 *  ended first). */
export class Task extends EventTarget {
  constructor(client, { number = null, taskId = null, digits = false, progress = false, cancel = false,
                        call = null }) {
    super();
    this.client = client;
    this.kind = cancel ? "cancel" : call !== null ? "call" : taskId === null ? "factorial" : "lookup";
    this.call = call;         // a catalog task's { type, ...params }
    this.info = null;         // a call's latest own state's meta
    this.number = number;
    this.taskId = taskId;
    this.digits = digits;
    this.progress = progress && !cancel;
    this.ahead = null;        // from "queued"
    this.state = "sent";
    this.value = null;        // the result, once done
    this.error = null;        // a FactorialWSError, once failed
    this.requestId = null;
    this.askedOn = null;      // the socket the current ask went out on
    this.asks = 0;
    this.confirmed = false;   // the gateway said it waits for the task, on the current ask
    this.accepted = new Promise((resolve, reject) => { this._accept = resolve; this._refuse = reject; });
    this.result = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
    // Callers may follow the events instead of the promises: no "unhandled rejection" then.
    this.accepted.catch(() => {});
    this.result.catch(() => {});
    if (taskId !== null) this._accept(taskId);
  }

  get finished() { return this.state === "done" || this.state === "error" || this.state === "cancelled"; }

  /** Take the task back: resolves to true once cancelled, false if it had ended first. */
  async cancel() {
    return this.client.cancel(await this.accepted);
  }

  _frame(requestId) {
    this.requestId = requestId;
    this.confirmed = false;
    this.asks += 1;
    if (this.kind === "cancel") return JSON.stringify({ type: "cancel", task_id: this.taskId, id: requestId });
    if (this.taskId !== null) {
      const lookup = { type: "result", task_id: this.taskId, id: requestId };
      return JSON.stringify(this.progress ? { ...lookup, progress: true } : lookup);
    }
    if (this.kind === "call") {
      const call = { ...this.call, id: requestId };
      return JSON.stringify(this.progress ? { ...call, progress: true } : call);
    }
    const progress = this.progress ? ', "progress": true' : "";
    return `{"type": "factorial", "number": ${numberText(this.number)}, "id": ${requestId}${progress}}`;
  }

  _setState(state) {
    this.state = state;
    this.dispatchEvent(new Event("statechange"));
  }

  _finish(digits) {
    // A catalog task's result is any JSON value (a lookup of one too: not digits then).
    const exact = this.kind !== "call" && typeof digits === "string";
    this.value = !exact || this.digits ? digits : BigInt(digits);
    this._resolve(this.value);
    this._setState("done");
  }

  _settle(value) {   // a cancel's outcome
    this.value = value;
    this._resolve(value);
    this._setState("done");
  }

  _fail(error) {
    this.error = error;
    this._refuse(error);
    this._reject(error);
    this._setState(error.name === "TaskCancelled" ? "cancelled" : "error");
  }
}

/** A client of the factorial-ws gateway. `url` defaults to the gateway this module was loaded
 *  from; `token` is sent as ?token= (a browser cannot set headers on a WebSocket);
 *  `reconnectDelaysMs`, `rateLimitPerS` and `rateLimitBurst` tune reconnection and pacing. Events:
 *  "status" (`status` is "connecting", "open" or "closed"; `retryInMs` while closed) and
 *  "servererror" (an error reply that names no request; `detail.message`). */
export class FactorialClient extends EventTarget {
  constructor(url = null, {
    token = null,
    reconnectDelaysMs = RECONNECT_DELAYS_MS,
    rateLimitPerS = RATE_LIMIT_PER_S,
    rateLimitBurst = RATE_LIMIT_BURST,
  } = {}) {
    super();
    this.url = url || gatewayUrl(new URL(import.meta.url), token);
    if (url && token) this.url += (this.url.includes("?") ? "&" : "?") + `token=${encodeURIComponent(token)}`;
    this.reconnectDelaysMs = reconnectDelaysMs;
    this._pace = { ratePerS: rateLimitPerS, burst: rateLimitBurst, tokens: rateLimitBurst,
                   updated: performance.now(), timer: null };
    this._outbox = [];         // [socket, frame] waiting for their turn
    this.status = "connecting";
    this.retryInMs = null;
    this._tasks = new Map();   // request id -> task still awaited
    this._waiting = new Set(); // every task still awaited
    this._nextRequestId = 1;
    this._attempt = 0;
    this._socket = null;
    this._closed = false;
    this._connect();
  }

  /** `number`! as a BigInt, or its digits with { digits: true }. */
  factorial(number, { digits = false } = {}) {
    return this.submit(number, { digits }).result;
  }

  /** Send a factorial request now (or as soon as connected); returns its Task at once. With
   *  { progress: true } its state also goes through "queued" and "started". */
  submit(number, { digits = false, progress = false } = {}) {
    return this._start(new Task(this, { number, digits, progress }));
  }

  /** The result of a task submitted before, by its id (waits if it still runs). */
  lookup(taskId, { digits = false } = {}) {
    return this.watch(taskId, { digits }).result;
  }

  /** A Task for a task submitted before, by its id (already `accepted`): states and result. */
  watch(taskId, { digits = false, progress = false } = {}) {
    return this._start(new Task(this, { taskId, digits, progress }));
  }

  /** Call the catalog task `name` with `params`; resolves to its result, any JSON value
   *  (rejects with a FactorialWSError: "TaskFailed", "InvalidRequest", "UnknownTask"…). */
  call(name, params = {}) {
    return this.submitCall(name, params).result;
  }

  /** Send a catalog task's request now; returns its Task at once (as submit() does). */
  submitCall(name, params = {}, { progress = false } = {}) {
    for (const field of ["type", "id", "progress"]) {
      if (field in params) throw new FactorialWSError(`Invalid request: '${field}' is a protocol field, not a parameter`);
    }
    return this._start(new Task(this, { call: { type: name, ...params }, progress }));
  }

  /** Take a task back: a task this connection created, that nobody else waits for, is revoked
   *  (never run, or stopped); otherwise only this client's waits for it end and the computation
   *  goes on (for others, or for a later lookup). Resolves to true once cancelled (this
   *  client's tasks waiting for it end "cancelled"), to false if the task had ended first (they
   *  get its outcome); rejects with TaskNotCancelled when this client neither created nor waits
   *  for it. */
  cancel(taskId) {
    return this._start(new Task(this, { taskId, cancel: true })).result;
  }

  /** Close for good: tasks still awaited fail. */
  close() {
    this._closed = true;
    if (this._socket) this._socket.close();
    for (const task of this._waiting) task._fail(new FactorialWSError("Client closed", task.taskId));
    this._waiting.clear();
    this._tasks.clear();
  }

  _start(task) {
    this._waiting.add(task);
    this._ask(task);
    return task;
  }

  /** Ask on the current socket, unless it was asked there already (or `again`). */
  _ask(task, again = false) {
    const socket = this._socket;
    if (task.finished || !socket || socket.readyState !== WebSocket.OPEN) return;
    if (task.askedOn === socket && !again) return;
    task.askedOn = socket;
    if (task.requestId !== null) this._tasks.delete(task.requestId);
    const requestId = this._nextRequestId++;
    this._tasks.set(requestId, task);
    this._outbox.push([socket, task._frame(requestId)]);
    this._flush();
  }

  /** Send what the rate allows now (a token bucket), and come back for the rest. */
  _flush() {
    const pace = this._pace;
    const now = performance.now();
    pace.tokens = Math.min(pace.burst, pace.tokens + ((now - pace.updated) / 1000) * pace.ratePerS);
    pace.updated = now;
    while (this._outbox.length && pace.tokens >= 1) {
      const [socket, frame] = this._outbox.shift();
      if (socket.readyState !== WebSocket.OPEN) continue;   // closed: asked again on the next
      socket.send(frame);
      pace.tokens -= 1;
    }
    if (this._outbox.length && pace.timer === null) {
      pace.timer = setTimeout(() => { pace.timer = null; this._flush(); }, 1000 / pace.ratePerS);
    }
  }

  _setStatus(status, retryInMs = null) {
    this.status = status;
    this.retryInMs = retryInMs;
    this.dispatchEvent(new Event("status"));
  }

  _connect() {
    this._setStatus("connecting");
    const socket = new WebSocket(this.url);
    this._socket = socket;
    socket.addEventListener("open", () => {
      this._attempt = 0;
      this._setStatus("open");
      for (const task of this._waiting) this._ask(task);
    });
    socket.addEventListener("message", (event) => {
      if (typeof event.data === "string") this._onFrame(event.data);
    });
    socket.addEventListener("close", () => this._onClose(socket));
  }

  _onClose(socket) {
    if (socket !== this._socket) return;
    this._socket = null;
    this._outbox = [];     // every task still awaited is asked again on the next socket
    this._tasks.clear();   // replies to the old socket's requests cannot come any more
    if (this._closed) {
      this._setStatus("closed");
      return;
    }
    const delay = this._delayMs(this._attempt++);
    this._setStatus("closed", delay);
    setTimeout(() => this._connect(), delay);
  }

  _delayMs(attempt) {
    const delays = this.reconnectDelaysMs;
    const delay = delays[Math.min(attempt, delays.length - 1)];
    return Math.round(delay * (0.75 + Math.random() * 0.5));
  }

  _onFrame(text) {
    let reply;
    try {
      reply = parseReply(text);
    } catch (err) {
      this._serverError(`Unreadable reply: ${err.message}`);
      return;
    }
    const task = this._tasks.get(reply.id);
    if (task && task.kind === "call") {
      this._onReply(task, JSON.parse(text));   // any JSON: no digits to keep exact
    } else if (task) {
      this._onReply(task, reply);
    } else if (reply.type === "error" && reply.id === undefined) {
      // No id (the gateway could not read one from the frame): some request will never hear
      // back. A new socket, on which every task is asked again, puts that right.
      this._serverError(String(reply.result));
      if (this._socket) this._socket.close();
    }
  }

  _serverError(message) {
    this.dispatchEvent(new CustomEvent("servererror", { detail: { message } }));
  }

  _onReply(task, reply) {
    if (task.kind === "cancel") {
      this._onCancelReply(task, reply);
    } else if (reply.type === "result" && reply.task_id && task.taskId === null) {
      task.taskId = reply.task_id;
      task.confirmed = true;
      task._accept(task.taskId);
      task._setState("pending");
    } else if (reply.type === "pending") {
      task.confirmed = true;
      if (task.state === "sent") task._setState("pending");
    } else if (reply.type === "queued" && task.state === "pending") {
      task.ahead = reply.ahead;
      task._setState("queued");
    } else if (reply.type === "started" && (task.state === "pending" || task.state === "queued")) {
      task._setState("started");
    } else if (reply.type === "progress" && !task.finished) {
      task.info = reply.info;
      task._setState("progress");
    } else if (reply.type === "success" && task.call) {
      this._forget(task);
      task._finish(reply.result);
    } else if (reply.type === "success") {
      this._forget(task);
      task._finish(reply.result);   // the digits, as parseReply cut them out (or a catalog task's JSON)
    } else if (reply.type === "error") {
      this._onError(task, String(reply.result), reply.task_id || task.taskId);
    }
    // Other types (from a newer gateway) are waited past.
  }

  _onCancelReply(task, reply) {
    if (reply.type === "cancelled") {
      this._forget(task);
      task._settle(true);
    } else if (reply.type === "success" || (reply.type === "error" && isOutcomeError(String(reply.result)))) {
      this._forget(task);
      task._settle(false);   // it had ended: its outcome came instead
    } else if (reply.type === "error") {
      this._onError(task, String(reply.result), reply.task_id || task.taskId);
    }
  }

  _onError(task, message, taskId) {
    if (message === TIMEOUT_ERROR && task.confirmed) {
      this._ask(task, true);   // the gateway stopped waiting; the task goes on: ask again
    } else if (message === RATE_LIMITED ||
               (TRANSIENT_ERRORS.has(message) && task.asks > 1 && task.taskId !== null)) {
      // Refused for its rate, the frame was not served (a factorial not submitted): asking
      // again later is always safe. Other "not now" errors only for the client's own asks.
      task.askedOn = null;     // unless a reconnection asks first
      setTimeout(() => this._ask(task), this._delayMs(Math.max(0, task.asks - 2)));
    } else {
      this._forget(task);
      task._fail(new FactorialWSError(message, taskId));
    }
  }

  _forget(task) {
    this._tasks.delete(task.requestId);
    this._waiting.delete(task);
  }
}
