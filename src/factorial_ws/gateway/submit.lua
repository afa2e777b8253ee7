-- One atomic step per request (a Lua script): reuse the task of the same number if it can still
-- give a result; else refuse if Redis' memory is past its high water (ARGV[20]), if the client
-- address stored too many result bytes, or if the hard queue's budget, or the address's own, is
-- spent; else mark the id as known and push its task.
-- A call repeated because its reply was lost (the connection dropped after Redis ran it) finds the
-- mark and pushes nothing, so the pool may retry it like a read. The script reads keys it is not
-- given (the meta and record of the task of the same number): fine on one Redis, which is all
-- Celery's Redis transport supports.
--
-- With progress (ARGV[9]), a created task's reply also says how many tasks were ahead of it:
-- the queue's length before the push, and the tasks of that queue that workers have taken and
-- not finished. kombu keeps each message a worker has taken in the ``unacked`` hash (KEYS[4])
-- until it is acknowledged, which (acks_late) is once the task is done; the value is JSON
-- ``[message, exchange, routing_key]``, so the queue (our routing key) ends it.
--
-- The budgets count a task's cost from its push until a worker takes it out of the queue, however
-- it ends (run, discarded as revoked or expired, cancelled while queued). The ledger (KEYS[5]) is
-- a list beside the queue: "<cost> <address>" for each task this script pushed, pushed at the
-- same end (LPUSH). Workers take tasks from the other end (kombu's BRPOP), oldest first, so the
-- tasks still queued are the ledger's newest LLEN(queue) entries: its older ones have left and
-- are forgotten, their cost taken off their address's total (KEYS[6], a hash) and the queue's
-- (KEYS[7]). A task that went back to the queue (a worker lost, a restore) or one pushed by
-- another client of Celery makes the queue longer than the ledger: the ledger forgets less, which
-- errs towards refusing, until the queue drains.
--
-- The bytes an address stored (KEYS[8]) are a hash of time buckets (ARGV[15] seconds wide) that
-- the workers' result backend fills (result_backend.py); a bucket whose results have all expired
-- no longer counts, and is deleted.
local record_key, queue, number_key, unacked = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ledger, address_costs, queue_cost, stored_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local task_id, record, envelope = ARGV[1], ARGV[2], ARGV[3]
local expires_s, reuse, pending_at_most_s = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local meta_prefix, record_prefix, progress = ARGV[7], ARGV[8], ARGV[9] == '1'
local address, cost = ARGV[10], tonumber(ARGV[11])
local queue_max, address_max = tonumber(ARGV[12]), tonumber(ARGV[13])
local stored_max, bucket_s = tonumber(ARGV[14]), tonumber(ARGV[15])
local ledger_s, storage_nearly_full = tonumber(ARGV[19]), ARGV[20] == '1'

local function ahead_of_last()
  if not progress then return -1 end
  local ahead = redis.call('LLEN', queue) - 1
  local tail = '"' .. queue .. '"]'
  for _, message in ipairs(redis.call('HVALS', unacked)) do
    if string.sub(message, -#tail) == tail then ahead = ahead + 1 end
  end
  return ahead
end

local running_prefix, worker_run_prefix, replaces_prefix = ARGV[16], ARGV[17], ARGV[18]

-- A task a worker started, whose worker run's heartbeat is gone (it was killed outright): its
-- message comes back only after the visibility timeout. The task created instead (ARGV[1])
-- will also store its result for it and for those it replaced in turn (worker/hooks.py), so
-- their waiters get it too; marked now, in case it is created.
local function lost(id)
  local run = redis.call('GET', running_prefix .. id)
  if not run or redis.call('EXISTS', worker_run_prefix .. run) == 1 then return false end
  local earlier = redis.call('GET', replaces_prefix .. id)
  redis.call('SET', replaces_prefix .. ARGV[1], earlier and (id .. ' ' .. earlier) or id, 'EX', expires_s)
  return true
end

-- 'done', 'pending', or nil when the task cannot give a result any more.
local function state_of(id)
  local head = redis.call('GETRANGE', meta_prefix .. id, 0, 63)
  if head ~= '' then
    local status = string.match(head, '"status":%s*"(%u+)"')
    if status == 'SUCCESS' then return 'done' end
    if status == 'FAILURE' or status == 'REVOKED' then return nil end
  end
  if lost(id) then return nil end
  local ttl_ms = redis.call('PTTL', record_prefix .. id)
  if ttl_ms < 0 then return nil end
  if expires_s * 1000 - ttl_ms > pending_at_most_s * 1000 then return nil end
  return 'pending'
end

-- A retried call for a task already sent (its record exists) sends nothing twice.
if redis.call('EXISTS', record_key) == 1 then return {'created', task_id, ahead_of_last()} end
if reuse then
  local existing = redis.call('GET', number_key)
  if existing then
    local state = state_of(existing)
    if state then return {state, existing} end
  end
end
-- Past the high water of Redis' memory (the gateway's gauge, memory.py), no new task of this
-- queue: its result would take the room kept for those already queued. Reuse, above, takes none.
if storage_nearly_full then return {'storage_nearly_full', ''} end
local now_s = tonumber(redis.call('TIME')[1])

-- Reads only, so far: the first write below decides whether Redis, out of memory, refuses it.
-- The address's stored bytes, from the buckets whose results have not all expired yet.
local stored, expired_buckets = 0, {}
if stored_max > 0 then
  local buckets = redis.call('HGETALL', stored_key)
  for i = 1, #buckets, 2 do
    if (tonumber(buckets[i]) + 1) * bucket_s + expires_s > now_s then
      stored = stored + tonumber(buckets[i + 1])
    else
      expired_buckets[#expired_buckets + 1] = buckets[i]
    end
  end
end
-- The costs still queued: the ledger's entries past the queue's length have left it.
local budgeted = queue_max > 0 or address_max > 0
local left, total, own, addresses = 0, 0, 0, 0
local left_by_address = {}
if budgeted then
  left = math.max(0, redis.call('LLEN', ledger) - redis.call('LLEN', queue))
  local left_entries = left > 0 and redis.call('LRANGE', ledger, -left, -1) or {}
  local left_cost = 0
  for _, entry in ipairs(left_entries) do
    local entry_cost, entry_address = string.match(entry, '^(%d+) (.*)$')
    left_by_address[entry_address] = (left_by_address[entry_address] or 0) + tonumber(entry_cost)
    left_cost = left_cost + tonumber(entry_cost)
  end
  total = tonumber(redis.call('GET', queue_cost) or '0') - left_cost
  own = tonumber(redis.call('HGET', address_costs, address) or '0') - (left_by_address[address] or 0)
  addresses = redis.call('HLEN', address_costs)
  for entry_address, entry_cost in pairs(left_by_address) do
    if tonumber(redis.call('HGET', address_costs, entry_address) or '0') <= entry_cost then
      addresses = addresses - 1
    end
  end
  if own <= 0 then addresses = addresses + 1 end
end

local refused
if stored_max > 0 and stored >= stored_max then
  refused = 'stored_too_much'
elseif address_max > 0 and own >= address_max then
  refused = 'client_busy'
elseif queue_max > 0 and total >= queue_max then
  -- Past the queue's budget, an address below its fair share of it is still admitted, so that
  -- addresses asking for much cannot lock out one that asks for little; up to twice the budget.
  if total >= 2 * queue_max or own >= queue_max / addresses then refused = 'queue_busy' end
end

if not refused then
  -- The first write is a SET, which Redis refuses outright when it is out of memory (after any
  -- other write, a script is let through so it cannot stop half-way).
  redis.call('SET', record_key, record, 'EX', expires_s)
  if reuse then redis.call('SET', number_key, task_id, 'EX', expires_s) end
end
-- Forget what has left the queue (RPOP comes first: Redis lets it through when out of memory).
if left > 0 then
  redis.call('RPOP', ledger, left)
  for entry_address, entry_cost in pairs(left_by_address) do
    if redis.call('HINCRBY', address_costs, entry_address, -entry_cost) <= 0 then
      redis.call('HDEL', address_costs, entry_address)
    end
  end
  if total <= 0 then redis.call('DEL', queue_cost) else redis.call('SET', queue_cost, total) end
end
if #expired_buckets > 0 then redis.call('HDEL', stored_key, unpack(expired_buckets)) end
if refused then return {refused, ''} end
redis.call('LPUSH', queue, envelope)
if budgeted then
  redis.call('LPUSH', ledger, cost .. ' ' .. address)
  redis.call('HINCRBY', address_costs, address, cost)
  redis.call('INCRBY', queue_cost, cost)
  -- Past TASK_EXPIRES without a new task, every task of the ledger has left or will be
  -- discarded unrun, at no cost: the three keys go, rather than wait for the next submission.
  if ledger_s > 0 then
    for _, key in ipairs({ledger, address_costs, queue_cost}) do redis.call('EXPIRE', key, ledger_s) end
  end
end
return {'created', task_id, ahead_of_last()}
